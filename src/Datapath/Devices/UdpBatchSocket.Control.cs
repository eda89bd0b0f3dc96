using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>The socket's control side: the firewall mark (WireGuard's <c>fwmark</c>) and moving
/// to another port (<c>listen_port</c>) while the data path keeps running.</summary>
public sealed unsafe partial class UdpBatchSocket
{
    private const int SO_MARK = 36;
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
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            ApplyMark(_fd, mark);
            Volatile.Write(ref _mark, mark);
        }
    }

    /// <summary>Reads SO_MARK back from the kernel (for tests and diagnostics).</summary>
    public uint ReadMark()
    {
        lock (_rebindLock)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
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
    public ushort Rebind(ushort port)
    {
        lock (_rebindLock)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            var local = (IPEndPoint)_socket.LocalEndPoint!;
            if (port != 0 && _localPort == port)
            {
                return port;
            }
            using var fresh = new Socket(_socket.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                if (_v6)
                {
                    fresh.DualMode = _socket.DualMode;
                }
                fresh.Bind(new IPEndPoint(local.Address, port));
            }
            catch (SocketException e)
            {
                throw new DeviceException($"cannot bind UDP port {port}: {e.Message}", e.ErrorCode);
            }
            fresh.Blocking = false;
            int freshFd = (int)fresh.SafeHandle.DangerousGetHandle();
            if (_mark != 0)
            {
                ApplyMark(freshFd, _mark);
            }
            ushort bound = (ushort)((IPEndPoint)fresh.LocalEndPoint!).Port;

            // Keep the old socket open through a second descriptor, so that threads polling it
            // can be woken after the number has moved on.
            int old = LibC.Dup(_fd);
            if (old < 0)
            {
                throw DeviceException.FromErrno("dup", Marshal.GetLastPInvokeError());
            }
            try
            {
                if (LibC.Dup3(freshFd, _fd, LibC.O_CLOEXEC) < 0)
                {
                    throw DeviceException.FromErrno("dup3", Marshal.GetLastPInvokeError());
                }
                Volatile.Write(ref _localPort, bound);
                // On an unconnected UDP socket shutdown reports ENOTCONN but still marks it shut
                // and wakes every poller (the kernel's "wake up other listeners" case).
                LibC.Shutdown(old, LibC.SHUT_RDWR);
            }
            finally
            {
                LibC.Close(old);
            }
            SetBuffer(LibC.SO_RCVBUFFORCE, LibC.SO_RCVBUF, _bufferBytes);
            SetBuffer(LibC.SO_SNDBUFFORCE, LibC.SO_SNDBUF, _bufferBytes);
            return bound;
        }
    }

}
