using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    [LibraryImport(Name, EntryPoint = "dup", SetLastError = true)]
    public static partial int Dup(int fd);
}
