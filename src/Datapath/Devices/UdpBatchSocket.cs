using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// A UDP socket that receives and sends many datagrams per system call (recvmmsg/sendmmsg).
/// Datagrams go straight into and out of caller-owned pinned memory, so nothing is copied or
/// allocated per datagram. An IPv6 socket is dual-stack: IPv4 peers appear as IPv4 endpoints.
/// One thread receives at a time; sends from several threads are serialised by a lock
/// (uncontended in the common case of one sending thread). The data path uses it as an
/// <see cref="IUdpBind"/> over pooled <see cref="PacketBuffer"/>s; the pointer-level calls are
/// internal to Datapath.
/// </summary>
public sealed unsafe partial class UdpBatchSocket : IUdpBind
{
    /// <summary>Socket buffer size asked for by default, wireguard-go's (7 MiB): large enough for
    /// bursts at line rate. As root SO_*BUFFORCE passes the sysctl limits.</summary>
    public const int DefaultBufferBytes = 7 << 20;

    private readonly Socket _socket;
    private readonly int _fd;
    private readonly Waker _waker = new();
    private readonly int _batch;
    private readonly bool _v6;

    // Native scratch for the system calls, one set per direction.
    private readonly MMsgHdr* _recvHeaders;
    private readonly IoVec* _recvIov;
    private readonly byte* _recvNames;
    private readonly byte* _recvControl;
    private readonly MMsgHdr* _sendHeaders;
    private readonly IoVec* _sendIov;
    private readonly byte* _sendNames;
    private readonly byte* _sendControl;
    private const int NameSize = 28; // sizeof(struct sockaddr_in6)
    private readonly InUseGuard _guard; // the native scratch is freed when the last call leaves a closed socket
    private readonly Lock _sendLock = new();
    private readonly int[] _sendFirst;   // prepared message -> its datagram

    /// <summary>Binds to <paramref name="port"/> (0 = any) on <paramref name="bindAddress"/>
    /// (null = all addresses, dual-stack).</summary>
    /// <param name="offloads">Use UDP GSO on send and UDP GRO on receive when the kernel has them.</param>
    public UdpBatchSocket(ushort port, IpAddress? bindAddress = null, int batchSize = 64, int bufferBytes = DefaultBufferBytes, bool offloads = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        _guard = new InUseGuard(FreeNative);
        _batch = batchSize;
        _v6 = bindAddress is null || bindAddress.Value.IsV6;
        _socket = new Socket(_v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            if (_v6)
            {
                _socket.DualMode = bindAddress is null;
            }
            IPAddress local = bindAddress?.ToIPAddress() ?? IPAddress.IPv6Any;
            _socket.Bind(new IPEndPoint(local, port));
        }
        catch (SocketException e)
        {
            _socket.Dispose();
            _waker.Dispose();
            throw new DeviceException($"cannot bind UDP port {port}: {e.Message}", e.ErrorCode);
        }
        _socket.Blocking = false;
        _fd = (int)_socket.SafeHandle.DangerousGetHandle();
        _localPort = (ushort)((IPEndPoint)_socket.LocalEndPoint!).Port;
        _bufferBytes = bufferBytes;
        SetBuffer(LibC.SO_RCVBUFFORCE, LibC.SO_RCVBUF, bufferBytes);
        SetBuffer(LibC.SO_SNDBUFFORCE, LibC.SO_SNDBUF, bufferBytes);

        _recvHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(MMsgHdr)));
        _recvIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(IoVec)));
        _recvNames = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * NameSize));
        _recvControl = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * ControlSize));
        _sendHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(MMsgHdr)));
        _sendIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(batchSize * sizeof(IoVec)));
        _sendNames = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * NameSize));
        _sendControl = (byte*)NativeMemory.AllocZeroed((nuint)(batchSize * ControlSize));
        _sendFirst = new int[batchSize];
        _sourceInfo = EnableSourceInfo(_fd);
        InitOffloads(offloads);
    }

    /// <summary>The bound port (useful after binding port 0).</summary>
    public ushort LocalPort => Volatile.Read(ref _localPort);

    /// <summary>The largest number of datagrams one call moves.</summary>
    public int BatchSize => _batch;

    private void SetBuffer(int forceOption, int option, int bytes)
    {
        // SO_*BUFFORCE passes rmem_max/wmem_max when we have CAP_NET_ADMIN; otherwise take what we may.
        if (LibC.SetSockOpt(_fd, LibC.SOL_SOCKET, forceOption, &bytes, sizeof(int)) != 0)
        {
            LibC.SetSockOpt(_fd, LibC.SOL_SOCKET, option, &bytes, sizeof(int));
        }
    }

    /// <summary>
    /// Receives up to <c>buffers.Length</c> datagrams (at most <see cref="BatchSize"/>), waiting
    /// for the first. Datagram i lands in buffers[i] (each <paramref name="capacity"/> bytes of
    /// pinned memory); its length and source are written to lengths[i] and sources[i].
    /// Returns the count, or -1 once the socket is closed. Oversized datagrams are truncated
    /// and reported with a length of -1 so the caller drops them.
    /// </summary>
    internal int ReceiveBatch(ReadOnlySpan<nint> buffers, int capacity, Span<int> lengths, Span<IpEndpoint> sources)
    {
        if (!Enter())
        {
            return -1;
        }
        try
        {
            return ReceiveBatchCore(buffers, capacity, lengths, sources);
        }
        finally
        {
            Exit();
        }
    }

    private int ReceiveBatchCore(ReadOnlySpan<nint> buffers, int capacity, Span<int> lengths, Span<IpEndpoint> sources)
    {
        int count = Math.Min(Math.Min(buffers.Length, _batch), Math.Min(lengths.Length, sources.Length));
        if (count == 0)
        {
            return 0;
        }
        for (int i = 0; i < count; i++)
        {
            _recvIov[i] = new IoVec { Base = (void*)buffers[i], Length = (nuint)capacity };
            _recvHeaders[i] = new MMsgHdr
            {
                Header = new MsgHdr
                {
                    Name = _recvNames + i * NameSize, NameLength = NameSize, Iov = &_recvIov[i], IovLength = 1,
                    Control = _recvControl + i * ControlSize, ControlLength = ControlSize,
                },
            };
        }
        int n = ReceiveMessages(_recvHeaders, (uint)count);
        for (int i = 0; i < n; i++)
        {
            const int MSG_TRUNC = 0x20;
            ref var header = ref _recvHeaders[i].Header;
            lengths[i] = (header.Flags & MSG_TRUNC) != 0 ? -1 : (int)_recvHeaders[i].Length;
            sources[i] = ReadSockaddr(_recvNames + i * NameSize);
            ReadControl(header.Control, (int)header.ControlLength, ref sources[i]);
        }
        return n;
    }

    /// <summary>One recvmmsg into prepared headers, waiting for the first datagram: the count, or
    /// -1 once the socket is closed. Errors that report an earlier send's ICMP are skipped.</summary>
    private int ReceiveMessages(MMsgHdr* headers, uint count)
    {
        while (true)
        {
            if (_guard.IsClosed)
            {
                return -1;
            }
            int n = LibC.RecvMmsg(_fd, headers, count, LibC.MSG_DONTWAIT, null);
            if (n > 0)
            {
                return n;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (n < 0 && errno == LibC.EAGAIN)
            {
                // Bounded, so that a reader parked on a socket Rebind replaced looks again.
                if (!_waker.WaitFor(_fd, LibC.POLLIN, ReceivePollMilliseconds))
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
            // ECONNREFUSED and friends report an ICMP error for an earlier send; they are not fatal.
            if (n < 0 && errno is 111 or 113 or 101 or 104)
            {
                continue;
            }
            throw DeviceException.FromErrno("recvmmsg", errno);
        }
    }

    /// <summary>
    /// Sends datagram i (lengths[i] bytes at buffers[i]) to destinations[i], for all i, waiting
    /// for socket space as needed. Returns how many were handed to the kernel; datagrams the
    /// kernel refuses outright (no route, wrong family) are skipped and not counted.
    /// </summary>
    internal int SendBatch(ReadOnlySpan<nint> buffers, ReadOnlySpan<int> lengths, ReadOnlySpan<IpEndpoint> destinations)
    {
        if (!Enter())
        {
            return 0;
        }
        try
        {
            lock (_sendLock)
            {
                return SendBatchCore(buffers, lengths, destinations);
            }
        }
        finally
        {
            Exit();
        }
    }

    private int SendBatchCore(ReadOnlySpan<nint> buffers, ReadOnlySpan<int> lengths, ReadOnlySpan<IpEndpoint> destinations)
    {
        int total = Math.Min(buffers.Length, Math.Min(lengths.Length, destinations.Length));
        int sent = 0;
        int start = 0;
        while (start < total)
        {
            int count = Math.Min(total - start, _batch);
            int prepared = 0;
            for (int i = 0; i < count; i++)
            {
                int k = start + i;
                byte* name = _sendNames + prepared * NameSize;
                uint nameLength = WriteSockaddr(destinations[k], name);
                if (nameLength == 0)
                {
                    continue; // an IPv6 destination on an IPv4 socket: cannot be sent
                }
                _sendIov[prepared] = new IoVec { Base = (void*)buffers[k], Length = (nuint)lengths[k] };
                _sendHeaders[prepared] = new MMsgHdr
                {
                    Header = new MsgHdr { Name = name, NameLength = nameLength, Iov = &_sendIov[prepared], IovLength = 1 },
                };
                byte* control = _sendControl + prepared * ControlSize;
                int controlLength = WriteControl(control, 0, destinations[k]);
                if (controlLength != 0)
                {
                    _sendHeaders[prepared].Header.Control = control;
                    _sendHeaders[prepared].Header.ControlLength = (nuint)controlLength;
                }
                _sendFirst[prepared] = k;
                prepared++;
            }
            sent += BatchSend.SendAll(_fd, _sendHeaders, prepared, _waker, _guard, new SourceRetry(this, _sendFirst, destinations));
            start += count;
        }
        return sent;
    }

    // ------------------------------------------------------------------ IUdpBind

    private long _oversized;

    /// <inheritdoc/>
    public long OversizedDatagrams => Interlocked.Read(ref _oversized);

    /// <summary>Sends one datagram (handshake messages, keepalives, tests).</summary>
    public bool Send(ReadOnlySpan<byte> datagram, in IpEndpoint destination)
    {
        fixed (byte* p = datagram)
        {
            nint buffer = (nint)p;
            int length = datagram.Length;
            return SendBatch(new ReadOnlySpan<nint>(in buffer), new ReadOnlySpan<int>(in length), new ReadOnlySpan<IpEndpoint>(in destination)) == 1;
        }
    }

    private IpEndpoint ReadSockaddr(byte* name)
    {
        ushort family = *(ushort*)name;
        ushort port = BinaryPrimitives.ReverseEndianness(*(ushort*)(name + 2));
        if (family == LibC.AF_INET)
        {
            return new IpEndpoint(IpAddress.FromBytes(new ReadOnlySpan<byte>(name + 4, 4)), port);
        }
        var bytes = new ReadOnlySpan<byte>(name + 8, 16);
        // IPv4 peers of a dual-stack socket arrive as ::ffff:a.b.c.d.
        if (bytes[..10].IndexOfAnyExcept((byte)0) < 0 && bytes[10] == 0xff && bytes[11] == 0xff)
        {
            return new IpEndpoint(IpAddress.FromBytes(bytes[12..]), port);
        }
        return new IpEndpoint(IpAddress.FromBytes(bytes), port);
    }

    private uint WriteSockaddr(IpEndpoint endpoint, byte* name)
    {
        new Span<byte>(name, NameSize).Clear();
        ushort port = BinaryPrimitives.ReverseEndianness(endpoint.Port);
        if (!_v6)
        {
            if (!endpoint.Address.IsV4)
            {
                return 0;
            }
            *(ushort*)name = LibC.AF_INET;
            *(ushort*)(name + 2) = port;
            endpoint.Address.WriteBytes(new Span<byte>(name + 4, 4));
            return 16;
        }
        *(ushort*)name = LibC.AF_INET6;
        *(ushort*)(name + 2) = port;
        var address = new Span<byte>(name + 8, 16);
        if (endpoint.Address.IsV4)
        {
            address[10] = 0xff;
            address[11] = 0xff;
            endpoint.Address.WriteBytes(address[12..]);
        }
        else
        {
            endpoint.Address.WriteBytes(address);
        }
        return NameSize;
    }

    private bool Enter() => _guard.Enter();

    private void Exit() => _guard.Exit();

    private void FreeNative()
    {
        NativeMemory.Free(_recvHeaders);
        NativeMemory.Free(_recvIov);
        NativeMemory.Free(_recvNames);
        NativeMemory.Free(_recvControl);
        NativeMemory.Free(_sendHeaders);
        NativeMemory.Free(_sendIov);
        NativeMemory.Free(_sendNames);
        NativeMemory.Free(_sendControl);
        FreeOffloads();
    }

    /// <summary>Closes the socket and wakes threads blocked in receive or send. The native
    /// scratch memory is freed once no call is in flight.</summary>
    public void Dispose()
    {
        if (!_guard.Close())
        {
            return;
        }
        _waker.Wake();
        lock (_rebindLock)
        {
            _socket.Dispose(); // never while Rebind is moving the descriptor
        }
        _guard.FreeIfIdle();
    }
}
