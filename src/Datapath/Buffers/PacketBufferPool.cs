using System.Diagnostics;

namespace Gateway.Datapath;

/// <summary>
/// A fixed pool of equally sized packet buffers carved out of one pinned slab
/// (<see cref="GC.AllocateUninitializedArray{T}(int, bool)"/> with pinned: true), so devices can
/// hand addresses to the kernel and no packet ever allocates after the pool is built.
/// Rent/Return take a short lock over a stack of free indices (the pool is shared by a
/// device reader and the pipeline stages that return buffers, so it must be thread safe).
/// </summary>
public sealed class PacketBufferPool
{
    /// <summary>Default headroom: room for Ethernet + outer IPv6 + UDP + VXLAN + WireGuard header
    /// (14 + 40 + 8 + 8 + 16 = 86) with slack; the design requires at least 128.</summary>
    public const int DefaultHeadroom = 128;

    private readonly byte[] _slab;
    private readonly PacketBuffer[] _buffers;
    private readonly int[] _free;
    private int _freeCount;
    private readonly Lock _lock = new();

    /// <param name="bufferCount">Number of buffers in the pool.</param>
    /// <param name="bufferSize">Bytes per buffer including headroom and tailroom (rounded up to 64).</param>
    /// <param name="headroom">Bytes reserved in front of the data for prepending headers (&gt;= 128).</param>
    public PacketBufferPool(int bufferCount, int bufferSize = 2048, int headroom = DefaultHeadroom)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headroom, DefaultHeadroom);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, headroom + 64);
        // Cache-line align every buffer so one packet never shares a line with its neighbour.
        int stride = (bufferSize + 63) & ~63;
        long total = (long)stride * bufferCount;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(total + 63, Array.MaxLength, nameof(bufferCount));
        // Pinned: the address never moves, so it can be handed to the kernel (recvmmsg, AF_XDP)
        // and aligned once here.
        _slab = GC.AllocateUninitializedArray<byte>((int)total + 63, pinned: true);
        int baseOffset = AlignmentOffset(_slab);
        BufferSize = stride;
        Headroom = headroom;
        _buffers = new PacketBuffer[bufferCount];
        _free = new int[bufferCount];
        for (int i = 0; i < bufferCount; i++)
        {
            _buffers[i] = new PacketBuffer(this, i, _slab, baseOffset + i * stride, stride, headroom);
            _free[i] = bufferCount - 1 - i;
        }
        _freeCount = bufferCount;
    }

    private static unsafe int AlignmentOffset(byte[] pinned)
    {
        nuint address = (nuint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned));
        return (int)((64 - (address & 63)) & 63);
    }

    /// <summary>Total bytes per buffer (headroom + data + tailroom).</summary>
    public int BufferSize { get; }

    /// <summary>Headroom every rented buffer starts with.</summary>
    public int Headroom { get; }

    /// <summary>Number of buffers in the pool.</summary>
    public int Capacity => _buffers.Length;

    /// <summary>Buffers currently available.</summary>
    public int Available
    {
        get { lock (_lock) { return _freeCount; } }
    }

    /// <summary>Rents a buffer reset to empty data at the default headroom; false when exhausted
    /// (the caller drops the packet and counts it rather than allocating).</summary>
    public bool TryRent(out PacketBuffer buffer)
    {
        int index;
        lock (_lock)
        {
            if (_freeCount == 0)
            {
                buffer = null!;
                return false;
            }
            index = _free[--_freeCount];
        }
        buffer = _buffers[index];
        buffer.ResetForRent();
        return true;
    }

    /// <summary>Returns a buffer to its pool. Returning twice is a bug and throws.</summary>
    public void Return(PacketBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (!ReferenceEquals(buffer.Pool, this))
        {
            throw new ArgumentException("Buffer belongs to another pool.", nameof(buffer));
        }
        if (!buffer.IsRented)
        {
            throw new InvalidOperationException("Buffer returned twice.");
        }
        buffer.IsRented = false;
        lock (_lock)
        {
            Debug.Assert(_freeCount < _free.Length);
            _free[_freeCount++] = buffer.Index;
        }
    }
}
