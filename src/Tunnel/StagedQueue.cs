using System.Buffers;

namespace Gateway.Tunnel;

/// <summary>
/// A peer's packets waiting for a handshake (wireguard-go's staged queue). Each is copied into a
/// buffer rented from the shared array pool and handed back when it is sent or dropped, so
/// staging allocates nothing once the pool and the queue have warmed up. Empty packets
/// (keepalives) need no buffer. Guarded by the peer's lock.
/// The buffers hold plaintext and the pool is shared with the whole process, so a buffer is
/// cleared when it goes back: the next renter (any code) never sees a staged packet.
/// </summary>
internal sealed class StagedQueue
{
    private readonly Queue<(byte[] Buffer, int Length)> _packets = new();

    public int Count => _packets.Count;

    public void Enqueue(ReadOnlySpan<byte> packet)
    {
        var buffer = packet.IsEmpty ? Array.Empty<byte>() : ArrayPool<byte>.Shared.Rent(packet.Length);
        packet.CopyTo(buffer);
        _packets.Enqueue((buffer, packet.Length));
    }

    /// <summary>Removes the oldest packet; the caller gives its buffer back with <see cref="Return"/>.</summary>
    public (byte[] Buffer, int Length) Dequeue() => _packets.Dequeue();

    public static void Return(byte[] buffer)
    {
        if (buffer.Length != 0)
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    /// <summary>Drops the oldest packet.</summary>
    public void DropOldest() => Return(_packets.Dequeue().Buffer);

    /// <summary>Drops everything.</summary>
    public void Clear()
    {
        while (_packets.TryDequeue(out var packet))
        {
            Return(packet.Buffer);
        }
    }
}
