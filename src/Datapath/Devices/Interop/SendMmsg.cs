using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    [LibraryImport(Name, EntryPoint = "sendmmsg", SetLastError = true)]
    public static partial int SendMmsg(int fd, MMsgHdr* messages, uint count, int flags);
}
