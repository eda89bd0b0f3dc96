using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    public const int CLONE_NEWNET = 0x40000000;
    public const int O_RDONLY = 0;

    [LibraryImport(Name, EntryPoint = "setns", SetLastError = true)]
    public static partial int SetNs(int fd, int nsType);
}
