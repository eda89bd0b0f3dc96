namespace Gateway.Datapath;

/// <summary>
/// A fixed-capacity list of packet buffers moved through the pipeline as a unit: a device read
/// fills one batch per syscall (recvmmsg, TUN with multiple reads, a capture file), each stage
/// works over the whole batch, and the sink drains it. The backing array is allocated once.
/// </summary>
public sealed class PacketBatch
{
    private readonly PacketBuffer[] _items;
    private int _count;

    public PacketBatch(int capacity = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _items = new PacketBuffer[capacity];
    }

    public int Count => _count;
    public int Capacity => _items.Length;
    public bool IsFull => _count == _items.Length;

    public PacketBuffer this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_count)
            {
                throw new ArgumentOutOfRangeException(nameof(index));
            }
            return _items[index];
        }
    }

    /// <summary>Appends a buffer; false when the batch is full.</summary>
    public bool TryAdd(PacketBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (_count == _items.Length)
        {
            return false;
        }
        _items[_count++] = buffer;
        return true;
    }

    /// <summary>Appends a buffer; throws when full (a caller bug, not bad input).</summary>
    public void Add(PacketBuffer buffer)
    {
        if (!TryAdd(buffer))
        {
            throw new InvalidOperationException("Batch is full.");
        }
    }

    /// <summary>Removes the buffer at <paramref name="index"/> by moving the last one into its
    /// place (order is not kept); returns the removed buffer so the caller can return or forward it.</summary>
    public PacketBuffer RemoveAtSwap(int index)
    {
        PacketBuffer removed = this[index];
        _items[index] = _items[--_count];
        _items[_count] = null!;
        return removed;
    }

    /// <summary>Keeps only the buffers for which <paramref name="keep"/> is true, in order; the
    /// others are returned to their pool. Returns the number dropped.</summary>
    public int Filter<TState>(TState state, Func<TState, PacketBuffer, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        int write = 0;
        int dropped = 0;
        for (int read = 0; read < _count; read++)
        {
            PacketBuffer b = _items[read];
            if (keep(state, b))
            {
                _items[write++] = b;
            }
            else
            {
                b.Return();
                dropped++;
            }
        }
        Array.Clear(_items, write, _count - write);
        _count = write;
        return dropped;
    }

    /// <summary>Empties the batch without returning the buffers (ownership moved elsewhere).</summary>
    public void Clear()
    {
        Array.Clear(_items, 0, _count);
        _count = 0;
    }

    /// <summary>Returns every buffer to its pool and empties the batch.</summary>
    public void ReturnAll()
    {
        for (int i = 0; i < _count; i++)
        {
            _items[i].Return();
            _items[i] = null!;
        }
        _count = 0;
    }

    /// <summary>The buffers currently in the batch.</summary>
    public ReadOnlySpan<PacketBuffer> AsSpan() => _items.AsSpan(0, _count);

    public ReadOnlySpan<PacketBuffer>.Enumerator GetEnumerator() => AsSpan().GetEnumerator();
}
