using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// An eventfd that device loops poll next to their file descriptor, so Close() can wake a
/// thread blocked waiting for packets (closing the fd alone does not wake it on Linux).
/// </summary>
internal sealed unsafe class Waker : IDisposable
{
    private int _fd;

    public Waker()
    {
        _fd = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (_fd < 0)
        {
            throw DeviceException.FromErrno("eventfd", Marshal.GetLastPInvokeError());
        }
    }

    public int Fd => _fd;

    public void Wake()
    {
        ulong one = 1;
        int fd = Volatile.Read(ref _fd);
        if (fd >= 0)
        {
            LibC.Write(fd, (byte*)&one, sizeof(ulong));
        }
    }

    /// <summary>
    /// Waits until <paramref name="fd"/> is ready for <paramref name="events"/>.
    /// Returns false when woken (the device is closing).
    /// </summary>
    public bool WaitFor(int fd, short events, int timeoutMilliseconds = -1)
    {
        PollFd* fds = stackalloc PollFd[2];
        while (true)
        {
            fds[0] = new PollFd { Fd = fd, Events = events };
            fds[1] = new PollFd { Fd = _fd, Events = LibC.POLLIN };
            int n = LibC.Poll(fds, 2, timeoutMilliseconds);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.EINTR)
                {
                    continue;
                }
                throw DeviceException.FromErrno("poll", errno);
            }
            if (fds[1].Revents != 0)
            {
                return false;
            }
            return true;
        }
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
