using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    [LibraryImport(Name, EntryPoint = "recvmmsg", SetLastError = true)]
    public static partial int RecvMmsg(int fd, MMsgHdr* messages, uint count, int flags, void* timeout);
}
