using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    [LibraryImport(Name, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initialValue, int flags);
}
