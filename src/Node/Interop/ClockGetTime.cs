using System.Runtime.InteropServices;

namespace Gateway.Node.Interop;

internal static partial class LibC
{
    /// <summary>The CPU time the calling thread has consumed (Linux CLOCK_THREAD_CPUTIME_ID).</summary>
    public const int ClockThreadCpuTime = 3;

    /// <summary>struct timespec on 64-bit Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>clock_gettime(2): reads clock <paramref name="clockId"/>; 0 on success.</summary>
    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    public static partial int ClockGetTime(int clockId, out Timespec time);

    /// <summary>The calling thread's CPU time in nanoseconds (0 where the clock is missing): unlike
    /// wall-clock time it does not grow while other processes hold the core.</summary>
    public static long ThreadCpuNanoseconds() =>
        OperatingSystem.IsLinux() && ClockGetTime(ClockThreadCpuTime, out var t) == 0 ? t.Seconds * 1_000_000_000 + t.Nanoseconds : 0;
}
