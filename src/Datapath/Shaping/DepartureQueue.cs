using System.Buffers.Binary;

namespace Gateway.Datapath.Shaping;

/// <summary>
/// The packets of one aggregate waiting for their departure times, in order: a ring of bytes
/// holding [departure time (8) | length (4) | pad (4) | packet, padded to 8] records, so that a
/// queue holds as many small packets as its bytes allow. The ring is allocated once, on the first
/// packet (an aggregate that never waits costs nothing); after that nothing is allocated. A packet
/// that does not fit is refused (the caller drops it), so memory per aggregate is bounded.
/// Thread-safety: none; the owner locks.
/// </summary>
public sealed class DepartureQueue
{
    private const int RecordHeader = 16;
    private const int WrapMarker = -1;
    private byte[]? _ring;
    private int _head;     // next record to read
    private int _tail;     // where the next record goes
    private int _count;
    private long _bytes;   // packet bytes queued (not record overhead)

    public DepartureQueue(int capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, 4096);
        CapacityBytes = (capacityBytes + 7) & ~7;
    }

    /// <summary>The ring's size in bytes (packets plus 16 bytes each).</summary>
    public int CapacityBytes { get; }

    /// <summary>Packets waiting.</summary>
    public int Count => _count;

    /// <summary>Bytes of the packets waiting.</summary>
    public long QueuedBytes => _bytes;

    /// <summary>True once the ring has been allocated (a packet has waited).</summary>
    public bool IsAllocated => _ring is not null;

    private static int RecordSize(int length) => (RecordHeader + length + 7) & ~7;

    /// <summary>Appends a packet that leaves at <paramref name="departureNs"/>; false when it does not fit.</summary>
    public bool TryEnqueue(long departureNs, ReadOnlySpan<byte> packet)
    {
        int size = RecordSize(packet.Length);
        if (size > CapacityBytes)
        {
            return false;
        }
        var ring = _ring ??= GC.AllocateUninitializedArray<byte>(CapacityBytes);
        if (_count == 0)
        {
            _head = _tail = 0;
        }
        int at;
        if (_count > 0 && _tail == _head)
        {
            return false; // exactly full
        }
        if (_tail >= _head)
        {
            if (ring.Length - _tail >= size)
            {
                at = _tail;
            }
            else if (_head >= size)
            {
                // Wrap: mark the rest of the ring unused (a gap shorter than a header is implied).
                if (ring.Length - _tail >= RecordHeader)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(ring.AsSpan(_tail + 8), WrapMarker);
                }
                at = 0;
            }
            else
            {
                return false;
            }
        }
        else
        {
            if (_head - _tail < size)
            {
                return false;
            }
            at = _tail;
        }
        BinaryPrimitives.WriteInt64LittleEndian(ring.AsSpan(at), departureNs);
        BinaryPrimitives.WriteInt32LittleEndian(ring.AsSpan(at + 8), packet.Length);
        packet.CopyTo(ring.AsSpan(at + RecordHeader));
        _tail = at + size;
        if (_tail == ring.Length)
        {
            _tail = 0;
        }
        _count++;
        _bytes += packet.Length;
        return true;
    }

    /// <summary>The departure time and length of the first packet, if any.</summary>
    public bool TryPeek(out long departureNs, out int length)
    {
        if (_count == 0)
        {
            departureNs = 0;
            length = 0;
            return false;
        }
        SkipWrap();
        var ring = _ring!;
        departureNs = BinaryPrimitives.ReadInt64LittleEndian(ring.AsSpan(_head));
        length = BinaryPrimitives.ReadInt32LittleEndian(ring.AsSpan(_head + 8));
        return true;
    }

    /// <summary>Removes the first packet, copying it into <paramref name="destination"/> (which must
    /// hold it; see <see cref="TryPeek"/>). Returns its length, or -1 when the queue is empty.</summary>
    public int Dequeue(Span<byte> destination)
    {
        if (!TryPeek(out _, out int length))
        {
            return -1;
        }
        var ring = _ring!;
        ring.AsSpan(_head + RecordHeader, length).CopyTo(destination);
        Drop(length);
        return length;
    }

    /// <summary>Removes the first packet without copying it (it no longer fits where it should go).</summary>
    public bool Skip()
    {
        if (!TryPeek(out _, out int length))
        {
            return false;
        }
        Drop(length);
        return true;
    }

    /// <summary>Removes every packet (a limit was lifted, or the endpoint left); returns how many.</summary>
    public int Clear()
    {
        int n = _count;
        _count = 0;
        _bytes = 0;
        _head = _tail = 0;
        return n;
    }

    private void Drop(int length)
    {
        _head += RecordSize(length);
        if (_head == _ring!.Length)
        {
            _head = 0;
        }
        _count--;
        _bytes -= length;
        if (_count == 0)
        {
            _head = _tail = 0;
        }
    }

    private void SkipWrap()
    {
        var ring = _ring!;
        if (ring.Length - _head < RecordHeader || BinaryPrimitives.ReadInt32LittleEndian(ring.AsSpan(_head + 8)) == WrapMarker)
        {
            _head = 0;
        }
    }
}
