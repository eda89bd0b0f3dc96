using System.Net;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>The socket's control side: the firewall mark (WireGuard's <c>fwmark</c>) and moving
/// to another port (<c>listen_port</c>) while the data path keeps running.</summary>
public sealed unsafe partial class UdpBatchSocket
{
    private const int SO_MARK = 36;
    private const int ReceivePollMilliseconds = 1000;
    private readonly Lock _rebindLock = new();
    private ushort _localPort;
    private uint _mark;
    private readonly int _bufferBytes;

    /// <summary>The firewall mark on outgoing datagrams (0 = none).</summary>
    public uint Mark => Volatile.Read(ref _mark);

    /// <summary>
    /// Sets SO_MARK, so that policy routing can keep the tunnel's own datagrams out of the tunnel
    /// (wg-quick's FwMark). 0 clears it. Needs CAP_NET_ADMIN. The mark survives <see cref="Rebind"/>.
    /// </summary>
    public void SetMark(uint mark)
    {
        lock (_rebindLock)
        {
            ObjectDisposedException.ThrowIf(_guard.IsClosed, this);
            ApplyMark(_fd, mark);
            Volatile.Write(ref _mark, mark);
        }
    }

    /// <summary>Reads SO_MARK back from the kernel (for tests and diagnostics).</summary>
    public uint ReadMark()
    {
        lock (_rebindLock)
        {
            ObjectDisposedException.ThrowIf(_guard.IsClosed, this);
            uint mark = 0, length = sizeof(uint);
            if (LibC.GetSockOpt(_fd, LibC.SOL_SOCKET, SO_MARK, &mark, &length) != 0)
            {
                throw DeviceException.FromErrno("getsockopt(SO_MARK)", Marshal.GetLastPInvokeError());
            }
            return mark;
        }
    }

    private static void ApplyMark(int fd, uint mark)
    {
        if (LibC.SetSockOpt(fd, LibC.SOL_SOCKET, SO_MARK, &mark, sizeof(uint)) != 0)
        {
            throw DeviceException.FromErrno("setsockopt(SO_MARK)", Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>
    /// Moves the socket to <paramref name="port"/> (0 = any) on the same address, without
    /// stopping the threads that use it: a new socket is bound first (so a port in use fails
    /// with <see cref="DeviceException"/> and changes nothing), then put in place of the old one
    /// under the same descriptor number (dup3), and the old one is shut down to wake threads
    /// waiting on it, which then carry on with the new one. Datagrams still queued on the old
    /// port are lost, as with any port change. Returns the bound port.
    /// </summary>
    /// <remarks>The new socket is made with socket(2) directly: a .NET Socket shuts its socket
    /// down when disposed, which would also shut the one now under this descriptor.</remarks>
    public ushort Rebind(ushort port)
    {
        lock (_rebindLock)
        {
            ObjectDisposedException.ThrowIf(_guard.IsClosed, this);
            if (port != 0 && _localPort == port)
            {
                return port;
            }
            int fresh = BindNew(port);
            try
            {
                if (_mark != 0)
                {
                    ApplyMark(fresh, _mark);
                }
                if (_gro)
                {
                    // The receive path expects coalesced runs whenever GRO was on at start.
                    int one = 1;
                    if (LibC.SetSockOpt(fresh, SOL_UDP, UDP_GRO, &one, sizeof(int)) != 0)
                    {
                        throw DeviceException.FromErrno("setsockopt(UDP_GRO)", Marshal.GetLastPInvokeError());
                    }
                }
                if (_sourceInfo && !EnableSourceInfo(fresh))
                {
                    throw DeviceException.FromErrno("setsockopt(IP_PKTINFO)", Marshal.GetLastPInvokeError());
                }
                ushort bound = PortOf(fresh);
                // A reader blocked in poll(2) holds the old socket and re-resolves the descriptor
                // number only when woken: shut the old socket's receive side first, so the reader
                // leaves poll (an unconnected UDP socket reports ENOTCONN but is still marked shut
                // and its pollers woken: the kernel's "wake up other listeners" case) and retries
                // until the number names the new socket. A reader that re-enters poll in between
                // is caught by the receive loop's bounded poll.
                int old = LibC.Dup(_fd);
                if (old < 0)
                {
                    throw DeviceException.FromErrno("dup", Marshal.GetLastPInvokeError());
                }
                try
                {
                    LibC.Shutdown(old, LibC.SHUT_RD);
                    if (LibC.Dup3(fresh, _fd, LibC.O_CLOEXEC) < 0)
                    {
                        throw DeviceException.FromErrno("dup3", Marshal.GetLastPInvokeError());
                    }
                    Volatile.Write(ref _localPort, bound);
                }
                finally
                {
                    LibC.Close(old);
                }
                SetBuffer(LibC.SO_RCVBUFFORCE, LibC.SO_RCVBUF, _bufferBytes);
                SetBuffer(LibC.SO_SNDBUFFORCE, LibC.SO_SNDBUF, _bufferBytes);
                return bound;
            }
            finally
            {
                LibC.Close(fresh); // _fd holds its own reference once dup3 succeeded
            }
        }
    }

    /// <summary>A new non-blocking UDP socket of this one's family and address mode, bound to <paramref name="port"/>.</summary>
    private int BindNew(ushort port)
    {
        const int IPPROTO_IPV6 = 41, IPV6_V6ONLY = 26;
        int fd = LibC.Socket(_v6 ? LibC.AF_INET6 : LibC.AF_INET, LibC.SOCK_DGRAM | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, LibC.IPPROTO_UDP);
        if (fd < 0)
        {
            throw DeviceException.FromErrno("socket", Marshal.GetLastPInvokeError());
        }
        int v6Only = _socket.DualMode ? 0 : 1;
        byte* name = stackalloc byte[NameSize];
        var local = (IPEndPoint)_socket.LocalEndPoint!;
        uint length = WriteSockaddr(new IpEndpoint(IpAddress.FromIPAddress(local.Address), port), name);
        if ((_v6 && LibC.SetSockOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6Only, sizeof(int)) != 0) || LibC.Bind(fd, name, length) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            LibC.Close(fd);
            throw new DeviceException($"cannot bind UDP port {port}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
        return fd;
    }

    private static ushort PortOf(int fd)
    {
        byte* name = stackalloc byte[NameSize];
        uint length = NameSize;
        if (LibC.GetSockName(fd, name, &length) != 0)
        {
            throw DeviceException.FromErrno("getsockname", Marshal.GetLastPInvokeError());
        }
        return System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(*(ushort*)(name + 2));
    }
}
