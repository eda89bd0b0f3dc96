using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// IPsec ESP (IP protocol 50) on the underlay through an IPv4 raw socket, many packets per system
/// call (recvmmsg/sendmmsg), behind the same <see cref="IUdpBind"/> the WireGuard data path uses:
/// an "endpoint" is a node address with port 0. Received packets arrive with their IPv4 header,
/// which is checked and stripped here, so the data path sees the ESP packet and its sender (as
/// the kernel's xfrm input hands the SPI and the outer source to the state lookup); on send the
/// kernel writes the outer IPv4 header (protocol 50) in front of the ESP packet. Needs root or
/// CAP_NET_RAW. The kernel here has no ESP state of its own for these packets (no xfrm states),
/// and a raw socket for protocol 50 also keeps it from answering them with ICMP.
/// </summary>
/// <remarks>IPv4 underlays only (the ESP outer header and the daemon's node addresses are IPv4, as
/// <see cref="Gateway.Datapath.Ipv4Header"/> reads them); one receiving thread, sends serialised
/// by a lock. Nothing is allocated per packet.</remarks>
public sealed unsafe class RawEspSocket : IUdpBind
{
    /// <summary>IP protocol number of ESP (RFC 4303).</summary>
    public const int IpProtocolEsp = 50;
    private const int SO_MARK = 36;
    private const int NameSize = 16; // sizeof(struct sockaddr_in)
    private const int ReceivePollMilliseconds = 1000;

    private const int SOCK_RAW = 3;
    private readonly int _fd;
    private readonly Waker _waker = new();
    private readonly int _batch;
    private readonly MMsgHdr* _recvHeaders;
    private readonly IoVec* _recvIov;
    private readonly byte* _recvNames;
    private readonly MMsgHdr* _sendHeaders;
    private readonly IoVec* _sendIov;
    private readonly byte* _sendNames;
    private readonly Lock _sendLock = new();
    private readonly InUseGuard _guard;
    private uint _mark;
    private long _oversized;
    private long _malformed;

    /// <summary>Opens the raw socket; <paramref name="bindAddress"/> (optional) receives only ESP
    /// sent to that node address. Throws <see cref="DeviceException"/> without CAP_NET_RAW.</summary>
    public RawEspSocket(IpAddress? bindAddress = null, int batchSize = 64, int bufferBytes = UdpBatchSocket.DefaultBufferBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        _guard = new InUseGuard(FreeNative);
        if (bindAddress is { IsV4: false })
        {
            throw new ArgumentException("The raw ESP socket is IPv4 only.", nameof(bindAddress));
        }
        _batch = batchSize;
        // socket(2) directly: .NET's Socket refuses protocol 50 for raw sockets on Linux.
        _fd = LibC.Socket(LibC.AF_INET, SOCK_RAW | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, IpProtocolEsp);
        if (_fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _waker.Dispose();
            throw new DeviceException($"cannot open a raw ESP socket (IP protocol 50; needs root or CAP_NET_RAW): {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
        if (bindAddress is { } address)
        {
            byte* name = stackalloc byte[NameSize];
            new Span<byte>(name, NameSize).Clear();
            *(ushort*)name = LibC.AF_INET;
            address.WriteBytes(new Span<byte>(name + 4, 4));
            if (LibC.Bind(_fd, name, NameSize) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                LibC.Close(_fd);
                _waker.Dispose();
                throw new DeviceException($"cannot bind the raw ESP socket to {address}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
            }
        }
        SetBuffer(LibC.SO_RCVBUFFORCE, LibC.SO_RCVBUF, bufferBytes);
        SetBuffer(LibC.SO_SNDBUFFORCE, LibC.SO_SNDBUF, bufferBytes);
        _recvHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(MMsgHdr)));
        _recvIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(IoVec)));
        _recvNames = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * NameSize));
        _sendHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(MMsgHdr)));
        _sendIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(IoVec)));
        _sendNames = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * NameSize));
    }

    /// <summary>ESP has no ports: 0.</summary>
    public ushort LocalPort => 0;

    /// <inheritdoc/>
    public long OversizedDatagrams => Interlocked.Read(ref _oversized);

    /// <summary>Received packets that were not a whole, unfragmented IPv4 packet carrying ESP.</summary>
    public long MalformedPackets => Interlocked.Read(ref _malformed);

    public uint Mark => Volatile.Read(ref _mark);

    public void SetMark(uint mark)
    {
        ObjectDisposedException.ThrowIf(_guard.IsClosed, this);
        if (LibC.SetSockOpt(_fd, LibC.SOL_SOCKET, SO_MARK, &mark, sizeof(uint)) != 0)
        {
            throw DeviceException.FromErrno("setsockopt(SO_MARK)", Marshal.GetLastPInvokeError());
        }
        Volatile.Write(ref _mark, mark);
    }

    /// <summary>ESP has no ports: only 0 is accepted (WireGuard's listen_port means nothing here).</summary>
    public ushort Rebind(ushort port) =>
        port == 0 ? (ushort)0 : throw new DeviceException("the raw ESP socket has no port to move to", LibC.EINVAL);

    private void SetBuffer(int forceOption, int option, int bytes)
    {
        if (LibC.SetSockOpt(_fd, LibC.SOL_SOCKET, forceOption, &bytes, sizeof(int)) != 0)
        {
            LibC.SetSockOpt(_fd, LibC.SOL_SOCKET, option, &bytes, sizeof(int));
        }
    }

    /// <summary>
    /// Receives ESP packets, waiting for the first: packet i's ESP bytes (outer IPv4 header
    /// stripped) become buffers[i]'s data and its sender sources[i] (port 0). Packets that are not
    /// whole IPv4/ESP are dropped and counted (<see cref="MalformedPackets"/>), truncated ones as
    /// oversized. Returns the count, or -1 once closed.
    /// </summary>
    public int Receive(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources)
    {
        int count = Math.Min(Math.Min(buffers.Length, sources.Length), _batch);
        if (count == 0)
        {
            return 0;
        }
        if (!Enter())
        {
            return -1;
        }
        try
        {
            while (true)
            {
                for (int i = 0; i < count; i++)
                {
                    _recvIov[i] = new IoVec { Base = (void*)buffers[i].WritableTailAddress, Length = (nuint)buffers[i].WritableTail.Length };
                    _recvHeaders[i] = new MMsgHdr
                    {
                        Header = new MsgHdr { Name = _recvNames + i * NameSize, NameLength = NameSize, Iov = &_recvIov[i], IovLength = 1 },
                    };
                }
                int n = ReceiveMessages((uint)count);
                if (n < 0)
                {
                    return -1;
                }
                int kept = 0;
                for (int i = 0; i < n; i++)
                {
                    const int MSG_TRUNC = 0x20;
                    if ((_recvHeaders[i].Header.Flags & MSG_TRUNC) != 0)
                    {
                        Interlocked.Increment(ref _oversized);
                        continue;
                    }
                    var received = buffers[i].WritableTail[..(int)_recvHeaders[i].Length];
                    if (!TryStripIpv4(received, out IpAddress source, out int espOffset, out int espLength))
                    {
                        Interlocked.Increment(ref _malformed);
                        continue;
                    }
                    if (kept != i)
                    {
                        received.Slice(espOffset, espLength).CopyTo(buffers[kept].WritableTail);
                        espOffset = 0;
                    }
                    var target = buffers[kept];
                    target.SetData(target.Headroom + espOffset, espLength);
                    sources[kept++] = new IpEndpoint(source, 0);
                }
                if (kept > 0)
                {
                    return kept;
                }
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The IPv4 header of a received packet: whole, not a fragment, protocol 50.</summary>
    internal static bool TryStripIpv4(ReadOnlySpan<byte> packet, out IpAddress source, out int espOffset, out int espLength)
    {
        source = default;
        espOffset = espLength = 0;
        if (Ipv4Header.TryRead(packet, out Ipv4Header ip) != ParseStatus.Ok || ip.Protocol != IpProtocolEsp || ip.IsFragment)
        {
            return false;
        }
        source = IpAddress.FromV4(ip.Source);
        espOffset = ip.HeaderLength;
        espLength = ip.PayloadLength;
        return espOffset + espLength <= packet.Length;
    }

    private int ReceiveMessages(uint count)
    {
        while (true)
        {
            if (_guard.IsClosed)
            {
                return -1;
            }
            int n = LibC.RecvMmsg(_fd, _recvHeaders, count, LibC.MSG_DONTWAIT, null);
            if (n > 0)
            {
                return n;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (n < 0 && errno == LibC.EAGAIN)
            {
                if (!_waker.WaitFor(_fd, LibC.POLLIN, ReceivePollMilliseconds) && _guard.IsClosed)
                {
                    return -1;
                }
                continue;
            }
            if (n < 0 && errno == LibC.EINTR)
            {
                continue;
            }
            if (_guard.IsClosed)
            {
                return -1;
            }
            if (n < 0 && errno is 111 or 113 or 101 or 104)
            {
                continue; // an ICMP error for an earlier send
            }
            throw DeviceException.FromErrno("recvmmsg", errno);
        }
    }

    /// <summary>Sends packets[i]'s data (an ESP packet) to destinations[i]'s address, in order.
    /// Returns how many the kernel took; refused ones (no route, IPv6) are skipped.</summary>
    public int Send(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        int total = Math.Min(packets.Length, destinations.Length);
        if (total == 0 || !Enter())
        {
            return 0;
        }
        try
        {
            lock (_sendLock)
            {
                int sent = 0;
                for (int start = 0; start < total; start += _batch)
                {
                    int count = Math.Min(total - start, _batch);
                    int prepared = 0;
                    for (int i = 0; i < count; i++)
                    {
                        var packet = packets[start + i];
                        if (Prepare(prepared, (void*)packet.DataAddress, packet.Length, destinations[start + i]))
                        {
                            prepared++;
                        }
                    }
                    sent += SendPrepared(prepared);
                }
                return sent;
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Sends one ESP packet.</summary>
    public bool Send(ReadOnlySpan<byte> datagram, in IpEndpoint destination)
    {
        if (!Enter())
        {
            return false;
        }
        try
        {
            fixed (byte* p = datagram)
            {
                lock (_sendLock)
                {
                    return Prepare(0, p, datagram.Length, destination) && SendPrepared(1) == 1;
                }
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// One attempt that never waits (the bind contract's send for the engine's own messages): a
    /// batch send holding the socket, or no socket space, answers WouldBlock.
    /// </summary>
    public SendAttempt TrySend(ReadOnlySpan<byte> datagram, in IpEndpoint destination)
    {
        if (!Enter())
        {
            return SendAttempt.Refused;
        }
        try
        {
            if (!_sendLock.TryEnter())
            {
                return SendAttempt.WouldBlock;
            }
            try
            {
                fixed (byte* p = datagram)
                {
                    if (!Prepare(0, p, datagram.Length, destination))
                    {
                        return SendAttempt.Refused;
                    }
                    if (LibC.SendMmsg(_fd, _sendHeaders, 1, LibC.MSG_DONTWAIT) == 1)
                    {
                        return SendAttempt.Sent;
                    }
                    return Marshal.GetLastPInvokeError() == LibC.EAGAIN ? SendAttempt.WouldBlock : SendAttempt.Refused;
                }
            }
            finally
            {
                _sendLock.Exit();
            }
        }
        finally
        {
            Exit();
        }
    }

    private bool Prepare(int slot, void* data, int length, in IpEndpoint destination)
    {
        if (!destination.Address.IsV4)
        {
            return false;
        }
        byte* name = _sendNames + slot * NameSize;
        new Span<byte>(name, NameSize).Clear();
        *(ushort*)name = LibC.AF_INET;
        destination.Address.WriteBytes(new Span<byte>(name + 4, 4));
        _sendIov[slot] = new IoVec { Base = data, Length = (nuint)length };
        _sendHeaders[slot] = new MMsgHdr
        {
            Header = new MsgHdr { Name = name, NameLength = NameSize, Iov = &_sendIov[slot], IovLength = 1 },
        };
        return true;
    }

    private int SendPrepared(int prepared) => BatchSend.SendAll(_fd, _sendHeaders, prepared, _waker, _guard);

    private bool Enter() => _guard.Enter();

    private void Exit() => _guard.Exit();

    private void FreeNative()
    {
        NativeMemory.Free(_recvHeaders);
        NativeMemory.Free(_recvIov);
        NativeMemory.Free(_recvNames);
        NativeMemory.Free(_sendHeaders);
        NativeMemory.Free(_sendIov);
        NativeMemory.Free(_sendNames);
        LibC.Close(_fd); // only now: no call is using the descriptor any more
        _waker.Dispose();
    }

    /// <summary>Closes the socket and wakes threads blocked in receive or send.</summary>
    public void Dispose()
    {
        if (!_guard.Close())
        {
            return;
        }
        _waker.Wake();
        _guard.FreeIfIdle();
    }
}
