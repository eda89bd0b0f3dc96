using System.Runtime.InteropServices;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Shaping;

/// <summary>
/// Lets a pacing thread sleep until a departure time with sub-millisecond precision and be woken
/// early when an earlier departure appears: ppoll on an eventfd with a nanosecond timeout (the
/// kernel's high-resolution timer, about 50 µs of slack), where Thread.Sleep and WaitHandle
/// timeouts round to whole milliseconds. The last <see cref="SpinNs"/> before a deadline are
/// spun, so a departure is met within microseconds when the CPU is free; under load the pacer
/// releases late packets together and the average rate still holds, because departure times are
/// absolute. No allocation per wait.
/// </summary>
public sealed unsafe class PreciseWaiter : IDisposable
{
    /// <summary>Closer than this to the deadline the waiter spins instead of sleeping.</summary>
    public const long SpinNs = 20_000;

    private int _fd;
    private int _armed; // 1 while the pacer sleeps: only then does a wake need the syscall

    public PreciseWaiter()
    {
        _fd = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (_fd < 0)
        {
            throw DeviceException.FromErrno("eventfd", Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>Called by the pacer before it looks at its queues: a <see cref="Wake"/> from then on
    /// makes the next <see cref="WaitUntil"/> return at once, so no wake-up is lost.</summary>
    public void Arm() => Volatile.Write(ref _armed, 1);

    /// <summary>Wakes the waiting thread (a no-op unless it is armed).</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _armed, 0) == 0)
        {
            return;
        }
        ulong one = 1;
        int fd = Volatile.Read(ref _fd);
        if (fd >= 0)
        {
            LibC.Write(fd, (byte*)&one, sizeof(ulong));
        }
    }

    /// <summary>
    /// Sleeps until <paramref name="deadlineNs"/> on the clock <paramref name="nowNs"/> reads (nanoseconds;
    /// long.MaxValue for no deadline), or until <see cref="Wake"/>.
    /// The caller re-checks its queues after every return.
    /// </summary>
    public void WaitUntil(Func<long> nowNs, long deadlineNs)
    {
        if (Volatile.Read(ref _armed) == 0)
        {
            return; // woken since Arm
        }
        long remaining = deadlineNs == long.MaxValue ? long.MaxValue : deadlineNs - nowNs();
        if (remaining <= 0)
        {
            Volatile.Write(ref _armed, 0);
            return;
        }
        if (remaining > SpinNs)
        {
            long sleep = remaining == long.MaxValue ? -1 : remaining - SpinNs;
            var timeout = new TimeSpec { Seconds = sleep / 1_000_000_000, Nanoseconds = sleep % 1_000_000_000 };
            var fds = new PollFd { Fd = Volatile.Read(ref _fd), Events = LibC.POLLIN };
            if (fds.Fd < 0)
            {
                return;
            }
            int n = LibC.PPoll(&fds, 1, sleep < 0 ? null : &timeout, null);
            if (n < 0)
            {
                Volatile.Write(ref _armed, 0);
                return; // interrupted (EINTR): the caller looks again and waits anew
            }
            if (n > 0 && (fds.Revents & LibC.POLLIN) != 0)
            {
                ulong value;
                LibC.Read(fds.Fd, (byte*)&value, sizeof(ulong));
                Volatile.Write(ref _armed, 0);
                return; // woken: something new to look at
            }
            if (remaining == long.MaxValue)
            {
                return;
            }
        }
        var spinner = new SpinWait();
        while (nowNs() < deadlineNs && Volatile.Read(ref _armed) == 1)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        Volatile.Write(ref _armed, 0);
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            LibC.Close(fd);
        }
    }
}
