using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    [LibraryImport(Name, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);
}
