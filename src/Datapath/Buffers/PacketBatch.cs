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

    /// <summary>
    /// Prepares a device receive: writes each buffer's receive address into
    /// <paramref name="addresses"/> and returns how many, with the smallest receive capacity
    /// among them in <paramref name="capacity"/> (all buffers of one pool have the same).
    /// </summary>
    public int GetReceiveAddresses(Span<nint> addresses, out int capacity)
    {
        int n = Math.Min(_count, addresses.Length);
        capacity = int.MaxValue;
        for (int i = 0; i < n; i++)
        {
            PacketBuffer b = _items[i];
            addresses[i] = b.WritableTailAddress;
            capacity = Math.Min(capacity, b.WritableTail.Length);
        }
        if (n == 0)
        {
            capacity = 0;
        }
        return n;
    }

    /// <summary>
    /// Finishes a device receive: buffer i gets length <c>lengths[i]</c> for i &lt; <paramref name="received"/>;
    /// buffers with a negative length (the device's "drop this one", e.g. truncated) and every
    /// buffer past <paramref name="received"/> go back to their pool. Keeps order; returns the
    /// packets kept.
    /// </summary>
    public int CommitReceived(ReadOnlySpan<int> lengths, int received)
    {
        if ((uint)received > (uint)_count || received > lengths.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(received));
        }
        int write = 0;
        for (int read = 0; read < _count; read++)
        {
            PacketBuffer b = _items[read];
            if (read < received && lengths[read] >= 0 && lengths[read] <= b.WritableTail.Length)
            {
                b.SetLength(lengths[read]);
                _items[write++] = b;
            }
            else
            {
                b.Return();
            }
        }
        Array.Clear(_items, write, _count - write);
        _count = write;
        return write;
    }

    /// <summary>Prepares a device send: data address and length of every packet, in order.</summary>
    public int GetSendSegments(Span<nint> addresses, Span<int> lengths)
    {
        int n = Math.Min(_count, Math.Min(addresses.Length, lengths.Length));
        for (int i = 0; i < n; i++)
        {
            addresses[i] = _items[i].DataAddress;
            lengths[i] = _items[i].Length;
        }
        return n;
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
