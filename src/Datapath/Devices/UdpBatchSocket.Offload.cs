using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices.Interop;

namespace Gateway.Datapath.Devices;

/// <summary>
/// The buffer-level half of <see cref="UdpBatchSocket"/> (<see cref="IUdpBind"/>), with the
/// kernel's UDP offloads as wireguard-go's conn/bind_std.go and gso_linux.go use them:
/// <list type="bullet">
/// <item>Send: consecutive datagrams to one destination, all of one size but a shorter last one,
/// go as one message whose iovecs point at each datagram in place, with a UDP_SEGMENT control
/// message carrying the size (UDP GSO): the kernel cuts them apart below the socket, so a batch
/// of 64 datagrams to one peer costs one trip down the stack instead of 64.</item>
/// <item>Receive: with UDP_GRO on, the kernel hands over runs of one flow's datagrams as one
/// buffer with a UDP_GRO control message giving the segment size; they are received into the
/// socket's own scratch and split into the caller's buffers (one copy, as wireguard-go's
/// splitCoalescedMessages makes). Segments that do not fit this call's buffers wait for the next.</item>
/// </list>
/// A kernel that refuses GSO (EIO, EINVAL on send) turns it off for the socket and the batch is
/// sent again datagram by datagram.
/// </summary>
public sealed unsafe partial class UdpBatchSocket
{
    private const int SOL_UDP = 17;
    private const int UDP_SEGMENT = 103;
    private const int UDP_GRO = 104;
    private const int EIO = 5;
    private const int MaxSegments = 64;           // UDP_MAX_SEGMENTS of older kernels
    private const int MaxGsoBytes = 65507 - 8;    // one UDP datagram's payload, less slack
    private const int CmsgHeader = 16;            // struct cmsghdr on 64-bit: size_t len; int level; int type
    // Per message: UDP_GRO or UDP_SEGMENT (CMSG_SPACE(4) = 24) and the source's IP_PKTINFO (32) and,
    // for IPv4 peers of a dual-stack socket, also IPV6_PKTINFO (40).
    private const int ControlSize = 96;
    private const int GroMessages = 8;            // coalesced messages received per call
    private const int GroCapacity = 65536;

    private bool _gso;
    private bool _gro;
    private readonly Lock _offloadSendLock = new();
    private MMsgHdr* _gsoHeaders;
    private IoVec* _gsoIov;
    private byte* _gsoNames;
    private byte* _gsoControl;
    private MMsgHdr* _groHeaders;
    private IoVec* _groIov;
    private byte* _groNames;
    private byte* _groControl;
    private byte[]? _groSlab;                     // pinned: GroMessages x GroCapacity
    private readonly int[] _groLengths = new int[GroMessages];
    private readonly int[] _groSizes = new int[GroMessages];
    private readonly IpEndpoint[] _groSources = new IpEndpoint[GroMessages];
    private int _groCount;       // messages held in the scratch
    private int _groMessage;     // the next message to hand out
    private int _groOffset;      // and the next byte of it
    private nint[]? _plainPointers;
    private int[]? _plainLengths;
    private long _gsoSends;
    private int[] _gsoFirst = [];                  // message -> index of one of its datagrams
    private long _groReceives;

    /// <summary>True while sends use UDP GSO.</summary>
    public bool GsoEnabled => Volatile.Read(ref _gso);

    /// <summary>True when the kernel coalesces received datagrams (UDP_GRO).</summary>
    public bool GroEnabled => _gro;

    /// <summary>Messages sent with more than one segment (UDP GSO).</summary>
    public long GsoSends => Interlocked.Read(ref _gsoSends);

    /// <summary>Received messages that held more than one datagram (UDP GRO).</summary>
    public long GroReceives => Interlocked.Read(ref _groReceives);

    private void InitOffloads(bool offloads)
    {
        _gsoHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(_batch * sizeof(MMsgHdr)));
        _gsoIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(_batch * sizeof(IoVec)));
        _gsoNames = (byte*)NativeMemory.AllocZeroed((nuint)(_batch * NameSize));
        _gsoControl = (byte*)NativeMemory.AllocZeroed((nuint)(_batch * ControlSize));
        _gsoFirst = new int[_batch];
        if (!offloads)
        {
            return;
        }
        // UDP GSO needs no socket option; whether the kernel takes it shows on the first send.
        _gso = true;
        int one = 1;
        if (LibC.SetSockOpt(_fd, SOL_UDP, UDP_GRO, &one, sizeof(int)) == 0)
        {
            _gro = true;
            _groHeaders = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(GroMessages * sizeof(MMsgHdr)));
            _groIov = (IoVec*)NativeMemory.AllocZeroed((nuint)(GroMessages * sizeof(IoVec)));
            _groNames = (byte*)NativeMemory.AllocZeroed((nuint)(GroMessages * NameSize));
            _groControl = (byte*)NativeMemory.AllocZeroed((nuint)(GroMessages * ControlSize));
            _groSlab = GC.AllocateUninitializedArray<byte>(GroMessages * GroCapacity, pinned: true);
        }
    }

    private void FreeOffloads()
    {
        NativeMemory.Free(_gsoHeaders);
        NativeMemory.Free(_gsoIov);
        NativeMemory.Free(_gsoNames);
        NativeMemory.Free(_gsoControl);
        if (_gro)
        {
            NativeMemory.Free(_groHeaders);
            NativeMemory.Free(_groIov);
            NativeMemory.Free(_groNames);
            NativeMemory.Free(_groControl);
        }
    }

    // ------------------------------------------------------------------ receive

    /// <inheritdoc/>
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
            return _gro ? ReceiveCoalesced(buffers[..count], sources) : ReceiveDirect(buffers[..count], sources);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Without GRO: straight into the caller's buffers, no copy.</summary>
    private int ReceiveDirect(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources)
    {
        int count = buffers.Length;
        var pointers = _plainPointers ??= new nint[_batch];
        var lengths = _plainLengths ??= new int[_batch];
        int capacity = int.MaxValue;
        for (int i = 0; i < count; i++)
        {
            pointers[i] = buffers[i].WritableTailAddress;
            capacity = Math.Min(capacity, buffers[i].WritableTail.Length);
        }
        while (true)
        {
            int n = ReceiveBatchCore(pointers.AsSpan(0, count), capacity, lengths.AsSpan(0, count), sources[..count]);
            if (n <= 0)
            {
                return n < 0 ? -1 : 0;
            }
            // Truncated datagrams are dropped here; the rest move up so that the batch stays dense.
            int kept = 0;
            for (int i = 0; i < n; i++)
            {
                if (lengths[i] < 0)
                {
                    Interlocked.Increment(ref _oversized);
                    continue;
                }
                if (kept != i)
                {
                    buffers[i].WritableTail[..lengths[i]].CopyTo(buffers[kept].WritableTail);
                    sources[kept] = sources[i];
                }
                buffers[kept++].SetLength(lengths[i]);
            }
            if (kept > 0)
            {
                return kept;
            }
        }
    }

    /// <summary>With GRO: into the scratch, then split into the caller's buffers.</summary>
    private int ReceiveCoalesced(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources)
    {
        int filled = HandOutCoalesced(buffers, sources, 0);
        if (filled > 0)
        {
            return filled; // what was held from the previous call; no system call
        }
        while (true)
        {
            int n = ReceiveIntoScratch();
            if (n < 0)
            {
                return -1;
            }
            filled = HandOutCoalesced(buffers, sources, 0);
            if (filled > 0)
            {
                return filled;
            }
        }
    }

    private int ReceiveIntoScratch()
    {
        byte* slab = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_groSlab!));
        for (int i = 0; i < GroMessages; i++)
        {
            _groIov[i] = new IoVec { Base = slab + i * GroCapacity, Length = GroCapacity };
            _groHeaders[i] = new MMsgHdr
            {
                Header = new MsgHdr
                {
                    Name = _groNames + i * NameSize, NameLength = NameSize, Iov = &_groIov[i], IovLength = 1,
                    Control = _groControl + i * ControlSize, ControlLength = ControlSize,
                },
            };
        }
        int n = ReceiveMessages(_groHeaders, GroMessages);
        if (n < 0)
        {
            return -1;
        }
        for (int i = 0; i < n; i++)
        {
            const int MSG_TRUNC = 0x20;
            ref var header = ref _groHeaders[i].Header;
            _groLengths[i] = (header.Flags & MSG_TRUNC) != 0 ? -1 : (int)_groHeaders[i].Length;
            _groSources[i] = ReadSockaddr(_groNames + i * NameSize);
            _groSizes[i] = ReadControl(header.Control, (int)header.ControlLength, ref _groSources[i]);
        }
        _groCount = n;
        _groMessage = 0;
        _groOffset = 0;
        return n;
    }

    /// <summary>Copies held datagrams into buffers[filled..]; returns the new count.</summary>
    private int HandOutCoalesced(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources, int filled)
    {
        var slab = _groSlab!;
        while (filled < buffers.Length && _groMessage < _groCount)
        {
            int m = _groMessage;
            int length = _groLengths[m];
            if (length < 0)
            {
                Interlocked.Increment(ref _oversized);
                _groMessage++;
                continue;
            }
            int size = _groSizes[m];
            if (size <= 0 || size > length)
            {
                size = length;
            }
            else if (_groOffset == 0 && length > size)
            {
                Interlocked.Increment(ref _groReceives);
            }
            int segment = Math.Min(size, length - _groOffset);
            var target = buffers[filled];
            if (segment > target.WritableTail.Length)
            {
                Interlocked.Increment(ref _oversized);
            }
            else
            {
                slab.AsSpan(m * GroCapacity + _groOffset, segment).CopyTo(target.WritableTail);
                target.SetLength(segment);
                sources[filled++] = _groSources[m];
            }
            _groOffset += segment;
            if (_groOffset >= length)
            {
                _groMessage++;
                _groOffset = 0;
            }
        }
        return filled;
    }

    // ------------------------------------------------------------------ send

    /// <inheritdoc/>
    public int Send(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        int total = Math.Min(packets.Length, destinations.Length);
        if (total == 0 || !Enter())
        {
            return 0;
        }
        try
        {
            lock (_offloadSendLock)
            {
                int sent = 0;
                for (int start = 0; start < total; start += _batch)
                {
                    int count = Math.Min(_batch, total - start);
                    sent += SendChunk(packets.Slice(start, count), destinations.Slice(start, count));
                }
                return sent;
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Up to one batch of datagrams: grouped for GSO, one sendmmsg (more if the socket is full).</summary>
    private int SendChunk(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        bool gso = Volatile.Read(ref _gso);
        int messages = 0;
        int iov = 0;
        int i = 0;
        while (i < packets.Length)
        {
            byte* name = _gsoNames + messages * NameSize;
            uint nameLength = WriteSockaddr(destinations[i], name);
            if (nameLength == 0)
            {
                i++; // an IPv6 destination on an IPv4 socket: cannot be sent
                continue;
            }
            int size = packets[i].Length;
            int first = iov;
            int bytes = 0;
            // One message: this datagram and, with GSO, the following ones to the same destination
            // of the same size (a shorter one may end the run).
            do
            {
                _gsoIov[iov++] = new IoVec { Base = (void*)packets[i].DataAddress, Length = (nuint)packets[i].Length };
                bytes += packets[i].Length;
                bool shorter = packets[i].Length < size;
                i++;
                if (!gso || shorter || i >= packets.Length || iov - first >= MaxSegments || packets[i].Length > size ||
                    bytes + packets[i].Length > MaxGsoBytes || !SameRoute(destinations[i], destinations[i - 1]))
                {
                    break;
                }
            }
            while (true);
            int segments = iov - first;
            ref var header = ref _gsoHeaders[messages];
            header = new MMsgHdr
            {
                Header = new MsgHdr { Name = name, NameLength = nameLength, Iov = &_gsoIov[first], IovLength = (nuint)segments },
            };
            byte* control = _gsoControl + messages * ControlSize;
            int controlLength = WriteControl(control, segments > 1 ? size : 0, destinations[i - 1]);
            if (controlLength != 0)
            {
                header.Header.Control = control;
                header.Header.ControlLength = (nuint)controlLength;
            }
            _gsoFirst[messages] = i - 1;
            messages++;
        }
        return SendMessages(messages, packets, destinations);
    }

    private int SendMessages(int messages, ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        int done = 0;
        int sent = 0;
        while (done < messages)
        {
            if (_guard.IsClosed)
            {
                return sent;
            }
            int n = LibC.SendMmsg(_fd, _gsoHeaders + done, (uint)(messages - done), LibC.MSG_DONTWAIT);
            if (n > 0)
            {
                for (int k = done; k < done + n; k++)
                {
                    int segments = (int)_gsoHeaders[k].Header.IovLength;
                    sent += segments;
                    if (segments > 1)
                    {
                        Interlocked.Increment(ref _gsoSends);
                    }
                }
                done += n;
                continue;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EAGAIN)
            {
                if (!_waker.WaitFor(_fd, LibC.POLLOUT))
                {
                    return sent;
                }
                continue;
            }
            if (errno == LibC.EINTR || ClearSource(_gsoHeaders, done, messages, _gsoFirst, destinations, errno))
            {
                continue; // a source address that is gone: the same message again without it
            }
            if (_gsoHeaders[done].Header.IovLength > 1 && errno is EIO or LibC.EINVAL)
            {
                // The kernel or the route's device cannot segment: no GSO from now on, and what is
                // left of this batch goes again datagram by datagram.
                Volatile.Write(ref _gso, false);
                int skip = 0;
                for (int k = 0; k < done; k++)
                {
                    skip += (int)_gsoHeaders[k].Header.IovLength;
                }
                return sent + SendChunkPlain(packets[skip..], destinations[skip..]);
            }
            // The first message of the rest failed on its own (unreachable, bad address): skip it.
            done++;
        }
        return sent;
    }

    private int SendChunkPlain(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        var pointers = _plainSendPointers ??= new nint[_batch];
        var lengths = _plainSendLengths ??= new int[_batch];
        for (int i = 0; i < packets.Length; i++)
        {
            pointers[i] = packets[i].DataAddress;
            lengths[i] = packets[i].Length;
        }
        lock (_sendLock)
        {
            return SendBatchCore(pointers.AsSpan(0, packets.Length), lengths.AsSpan(0, packets.Length), destinations);
        }
    }

    private nint[]? _plainSendPointers;
    private int[]? _plainSendLengths;
}
