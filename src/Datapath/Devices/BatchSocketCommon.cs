using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// Keeps a socket's native scratch memory (and, for some sockets, the descriptor) alive while any
/// call is using it: every call enters and exits; <see cref="Close"/> marks the socket closed, and
/// the memory is freed exactly once, by whichever of the closing thread or the last call to leave
/// comes last. Shared by <see cref="UdpBatchSocket"/> and <see cref="RawEspSocket"/>. Nothing is
/// allocated per call (the free callback is bound once).
/// </summary>
internal sealed class InUseGuard(Action free)
{
    private int _users;  // calls in flight
    private int _closed;
    private int _freed;

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Enters a call; false once closed (then the call must not touch the socket).</summary>
    public bool Enter()
    {
        Interlocked.Increment(ref _users);
        if (IsClosed)
        {
            Exit();
            return false;
        }
        return true;
    }

    /// <summary>Leaves a call; the last call to leave a closed socket frees it.</summary>
    public void Exit()
    {
        if (Interlocked.Decrement(ref _users) == 0 && IsClosed)
        {
            Free();
        }
    }

    /// <summary>Marks the socket closed; false when it already was. The caller then wakes blocked
    /// threads and calls <see cref="FreeIfIdle"/>.</summary>
    public bool Close() => Interlocked.Exchange(ref _closed, 1) == 0;

    /// <summary>Frees now when no call is in flight (otherwise the last one to leave does).</summary>
    public void FreeIfIdle()
    {
        if (Volatile.Read(ref _users) == 0)
        {
            Free();
        }
    }

    private void Free()
    {
        if (Interlocked.Exchange(ref _freed, 1) == 0)
        {
            free();
        }
    }
}

/// <summary>The sendmmsg loop <see cref="UdpBatchSocket"/> and <see cref="RawEspSocket"/> share.</summary>
internal static unsafe class BatchSend
{
    /// <summary>
    /// Sends the prepared messages headers[0..count) with sendmmsg (MSG_DONTWAIT), waiting for
    /// socket space on EAGAIN (woken by <paramref name="waker"/> when the socket closes) and
    /// retrying on EINTR. A message the kernel refuses on its own (unreachable, bad address, too
    /// big) is skipped and the rest of the batch goes on. Returns how many messages were sent;
    /// stops early once <paramref name="guard"/> is closed.
    /// </summary>
    public static int SendAll(int fd, MMsgHdr* headers, int count, Waker waker, InUseGuard guard) =>
        SendAll(fd, headers, count, waker, guard, default(NoRetry));

    /// <summary><see cref="SendAll(int, MMsgHdr*, int, Waker, InUseGuard)"/> that first offers a failed
    /// message to <paramref name="retry"/>, which may change it and have it sent again (the UDP bind
    /// drops a source address the kernel no longer has).</summary>
    public static int SendAll<TRetry>(int fd, MMsgHdr* headers, int count, Waker waker, InUseGuard guard, TRetry retry)
        where TRetry : ISendRetry, allows ref struct
    {
        int done = 0, sent = 0;
        while (done < count)
        {
            if (guard.IsClosed)
            {
                return sent;
            }
            int n = LibC.SendMmsg(fd, headers + done, (uint)(count - done), LibC.MSG_DONTWAIT);
            if (n > 0)
            {
                done += n;
                sent += n;
                continue;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EAGAIN)
            {
                if (!waker.WaitFor(fd, LibC.POLLOUT))
                {
                    return sent;
                }
                continue;
            }
            if (errno == LibC.EINTR || retry.Retry(headers, done, count, errno))
            {
                continue;
            }
            done++; // the first message of the rest failed on its own: skip it, keep the batch going
        }
        return sent;
    }
}

/// <summary>A chance to repair a message sendmmsg refused (<see cref="BatchSend"/>): true when
/// headers[at] was changed and should be sent again.</summary>
internal unsafe interface ISendRetry
{
    bool Retry(MMsgHdr* headers, int at, int count, int errno);
}

/// <summary>No repair: a refused message is skipped.</summary>
internal readonly unsafe struct NoRetry : ISendRetry
{
    public bool Retry(MMsgHdr* headers, int at, int count, int errno) => false;
}
