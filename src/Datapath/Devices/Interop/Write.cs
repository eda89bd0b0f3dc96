using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    [LibraryImport(Name, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nuint count);
}
