using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, void* argument);
}
