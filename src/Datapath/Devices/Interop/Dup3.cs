using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static partial class LibC
{
    /// <summary>Makes <paramref name="newFd"/> refer to <paramref name="oldFd"/>'s file, atomically.</summary>
    [LibraryImport(Name, EntryPoint = "dup3", SetLastError = true)]
    public static partial int Dup3(int oldFd, int newFd, int flags);
}
