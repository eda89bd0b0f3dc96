using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    [LibraryImport(Name, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);
}
