using System.Numerics;
using System.Runtime.InteropServices;

namespace Gateway.Policy;

/// <summary>
/// A bounded multi-producer queue of flow events that never blocks the datapath: when it is
/// full, the event is dropped and <see cref="Lost"/> counts it. Lock-free (per-cell sequence
/// numbers, after Dmitry Vyukov's bounded MPMC queue); writing copies a struct and allocates
/// nothing. Readers drain it from a control thread (flow log, `hubble observe`-style output).
/// </summary>
public sealed class FlowEventRing
{
    [StructLayout(LayoutKind.Auto)]
    private struct Cell
    {
        public long Sequence;
        public FlowEvent Event;
    }

    private readonly Cell[] _cells;
    private readonly long _mask;
    private long _enqueue;
    private long _dequeue;
    private long _lost;

    public FlowEventRing(int capacity)
    {
        if (capacity < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "The ring needs at least 2 slots.");
        }
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)capacity);
        _cells = new Cell[size];
        for (int i = 0; i < size; i++)
        {
            _cells[i].Sequence = i;
        }
        _mask = size - 1;
    }

    public int Capacity => _cells.Length;

    /// <summary>Events dropped because the ring was full.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    /// <summary>Approximate number of queued events.</summary>
    public int Count => (int)Math.Max(0, Volatile.Read(ref _enqueue) - Volatile.Read(ref _dequeue));

    /// <summary>Queues an event; returns false (and counts it lost) when the ring is full. Never waits.</summary>
    public bool TryWrite(in FlowEvent e)
    {
        long pos = Volatile.Read(ref _enqueue);
        while (true)
        {
            ref var cell = ref _cells[pos & _mask];
            long seq = Volatile.Read(ref cell.Sequence);
            long diff = seq - pos;
            if (diff == 0)
            {
                long seen = Interlocked.CompareExchange(ref _enqueue, pos + 1, pos);
                if (seen == pos)
                {
                    cell.Event = e;
                    Volatile.Write(ref cell.Sequence, pos + 1);
                    return true;
                }
                pos = seen;
            }
            else if (diff < 0)
            {
                Interlocked.Increment(ref _lost);
                return false;
            }
            else
            {
                pos = Volatile.Read(ref _enqueue);
            }
        }
    }

    /// <summary>Takes the oldest event, if any.</summary>
    public bool TryRead(out FlowEvent e)
    {
        long pos = Volatile.Read(ref _dequeue);
        while (true)
        {
            ref var cell = ref _cells[pos & _mask];
            long seq = Volatile.Read(ref cell.Sequence);
            long diff = seq - (pos + 1);
            if (diff == 0)
            {
                long seen = Interlocked.CompareExchange(ref _dequeue, pos + 1, pos);
                if (seen == pos)
                {
                    e = cell.Event;
                    Volatile.Write(ref cell.Sequence, pos + _mask + 1);
                    return true;
                }
                pos = seen;
            }
            else if (diff < 0)
            {
                e = default;
                return false;
            }
            else
            {
                pos = Volatile.Read(ref _dequeue);
            }
        }
    }
}
