using System.Runtime.InteropServices;

namespace Gateway.Datapath.Devices.Interop;

internal static unsafe partial class LibC
{
    /// <summary>poll with a nanosecond timeout (the kernel's high-resolution timers; poll's is milliseconds).</summary>
    [LibraryImport(Name, EntryPoint = "ppoll", SetLastError = true)]
    public static partial int PPoll(PollFd* fds, nuint count, TimeSpec* timeout, void* signalMask);
}

/// <summary>struct timespec on 64-bit Linux.</summary>
internal struct TimeSpec
{
    public long Seconds;
    public long Nanoseconds;
}
