using System.Runtime.CompilerServices;

namespace Gateway.Datapath;

/// <summary>
/// One packet in a pinned slab: a fixed region split into headroom, data and tailroom.
/// <code>
///   region start        Start              End                 region end
///   |&lt;--- headroom ----&gt;|&lt;------ data ------&gt;|&lt;--- tailroom ---&gt;|
/// </code>
/// Headers are prepended into the headroom and trailers (e.g. a WireGuard tag) appended into the
/// tailroom, so encapsulation never copies the payload. Instances are owned by a
/// <see cref="PacketBufferPool"/> and reused; never keep one after returning it.
/// </summary>
public sealed class PacketBuffer
{
    private readonly byte[] _slab;
    private readonly int _regionOffset;
    private readonly int _regionLength;
    private readonly int _defaultHeadroom;
    private int _start;   // relative to region
    private int _length;

    internal PacketBuffer(PacketBufferPool pool, int index, byte[] slab, int regionOffset, int regionLength, int headroom)
    {
        Pool = pool;
        Index = index;
        _slab = slab;
        _regionOffset = regionOffset;
        _regionLength = regionLength;
        _defaultHeadroom = headroom;
        _start = headroom;
    }

    internal PacketBufferPool Pool { get; }
    internal int Index { get; }
    internal bool IsRented { get; set; }

    /// <summary>Bytes available in front of the data.</summary>
    public int Headroom => _start;

    /// <summary>Bytes available after the data.</summary>
    public int Tailroom => _regionLength - _start - _length;

    /// <summary>Length of the packet data.</summary>
    public int Length => _length;

    /// <summary>Total size of the region (headroom + data + tailroom).</summary>
    public int Capacity => _regionLength;

    /// <summary>Link type of the data (set by the device that filled it).</summary>
    public LinkType LinkType { get; set; } = LinkType.Raw;

    /// <summary>Capture or receive time in ticks of whatever clock the device uses; 0 if none.</summary>
    public long Timestamp { get; set; }

    /// <summary>The packet bytes.</summary>
    public Span<byte> Data => _slab.AsSpan(_regionOffset + _start, _length);

    /// <summary>The packet bytes as memory (for APIs that need Memory, e.g. sockets).</summary>
    public Memory<byte> Memory => _slab.AsMemory(_regionOffset + _start, _length);

    /// <summary>Everything from the data start to the end of the region: where a device receives
    /// into before calling <see cref="SetLength"/>.</summary>
    public Span<byte> WritableTail => _slab.AsSpan(_regionOffset + _start, _regionLength - _start);

    /// <summary>Address of the first data byte, for native I/O (sendmmsg, TUN writes). Stable:
    /// the slab is pinned for the pool's lifetime. Valid while the buffer is rented.</summary>
    public unsafe nint DataAddress =>
        (nint)Unsafe.AsPointer(ref Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_slab), _regionOffset + _start));

    /// <summary>Address of <see cref="WritableTail"/> (recvmmsg, TUN reads); its capacity is
    /// <c>WritableTail.Length</c>.</summary>
    public nint WritableTailAddress => DataAddress;

    /// <summary>The whole region (headroom, data and tailroom), for stages that work at fixed
    /// offsets in it and then name the result with <see cref="SetData"/>.</summary>
    public Span<byte> Region => _slab.AsSpan(_regionOffset, _regionLength);

    /// <summary>Makes region bytes [<paramref name="start"/>, +<paramref name="length"/>) the data.</summary>
    public void SetData(int start, int length)
    {
        if ((uint)start > (uint)_regionLength || (uint)length > (uint)(_regionLength - start))
        {
            throw new ArgumentOutOfRangeException(nameof(length));
        }
        _start = start;
        _length = length;
    }

    /// <summary>Sets the data length after a device wrote into <see cref="WritableTail"/>.</summary>
    public void SetLength(int length)
    {
        if ((uint)length > (uint)(_regionLength - _start))
        {
            throw new ArgumentOutOfRangeException(nameof(length));
        }
        _length = length;
    }

    /// <summary>Resets to empty data at <paramref name="headroom"/> bytes from the region start.</summary>
    public void Reset(int headroom)
    {
        if ((uint)headroom > (uint)_regionLength)
        {
            throw new ArgumentOutOfRangeException(nameof(headroom));
        }
        _start = headroom;
        _length = 0;
    }

    /// <summary>Copies <paramref name="packet"/> in as the data (at the default headroom).</summary>
    public bool TrySet(ReadOnlySpan<byte> packet)
    {
        if (packet.Length > _regionLength - _defaultHeadroom)
        {
            return false;
        }
        _start = _defaultHeadroom;
        _length = packet.Length;
        packet.CopyTo(Data);
        return true;
    }

    /// <summary>Grows the data at the front by <paramref name="count"/> bytes (for a new header)
    /// and returns the new header region; false when the headroom is too small.</summary>
    public bool TryPrepend(int count, out Span<byte> header)
    {
        if ((uint)count > (uint)_start)
        {
            header = default;
            return false;
        }
        _start -= count;
        _length += count;
        header = _slab.AsSpan(_regionOffset + _start, count);
        return true;
    }

    /// <summary>Grows the data at the end by <paramref name="count"/> bytes and returns them.</summary>
    public bool TryAppend(int count, out Span<byte> trailer)
    {
        if ((uint)count > (uint)Tailroom)
        {
            trailer = default;
            return false;
        }
        trailer = _slab.AsSpan(_regionOffset + _start + _length, count);
        _length += count;
        return true;
    }

    /// <summary>Removes <paramref name="count"/> bytes from the front (decapsulation).</summary>
    public bool TryTrimFront(int count)
    {
        if ((uint)count > (uint)_length)
        {
            return false;
        }
        _start += count;
        _length -= count;
        return true;
    }

    /// <summary>Removes <paramref name="count"/> bytes from the end (e.g. a tag or padding).</summary>
    public bool TryTrimEnd(int count)
    {
        if ((uint)count > (uint)_length)
        {
            return false;
        }
        _length -= count;
        return true;
    }

    /// <summary>Returns this buffer to its pool.</summary>
    public void Return() => Pool.Return(this);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ResetForRent()
    {
        IsRented = true;
        _start = _defaultHeadroom;
        _length = 0;
        LinkType = LinkType.Raw;
        Timestamp = 0;
    }
}
