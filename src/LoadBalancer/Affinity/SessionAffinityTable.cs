using System.Numerics;
using Gateway.Datapath;

namespace Gateway.LoadBalancer;

/// <summary>
/// Client-IP session affinity (Cilium's lb_affinity map): which backend a client last used for a
/// frontend, and when. An entry is good while now - lastUsed &lt;= the service's timeout; every
/// use refreshes it. Keyed by the frontend's VIP:port/protocol rather than a compile-time index
/// so affinity survives reloads; the caller checks the backend still belongs to the frontend.
/// Bounded and sharded like conntrack (a key may sit in one of 8 slots after its hash; when they
/// are full the least recently used is replaced). Time is nanoseconds from the caller's clock.
/// </summary>
public sealed class SessionAffinityTable
{
    private const int ProbeLength = 8;
    private readonly Shard[] _shards;
    private readonly int _shardMask, _slotMask;

    public SessionAffinityTable(int capacity = 65536)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 64);
        int shards = 16;
        int perShard = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(ProbeLength, capacity / shards));
        _shards = new Shard[shards];
        for (int i = 0; i < shards; i++)
        {
            _shards[i] = new Shard(perShard);
        }
        _shardMask = shards - 1;
        _slotMask = perShard - 1;
        Capacity = shards * perShard;
    }

    public int Capacity { get; }

    /// <summary>The backend this client used for the frontend within <paramref name="timeoutNs"/>; refreshes it.</summary>
    public bool TryGet(IpAddress client, IpAddress vip, ushort port, byte protocol, long nowNs, long timeoutNs,
        out IpAddress backend, out ushort backendPort)
    {
        var key = new Key(client, vip, port, protocol);
        int h = key.Hash();
        var shard = _shards[h & _shardMask];
        int baseSlot = (h >>> 8) & _slotMask;
        lock (shard)
        {
            for (int i = 0; i < ProbeLength; i++)
            {
                ref var e = ref shard.Entries[(baseSlot + i) & _slotMask];
                if (e.Used && e.Key.Equals(in key))
                {
                    if (nowNs - e.LastUsedNs > timeoutNs)
                    {
                        e.Used = false;
                        break;
                    }
                    e.LastUsedNs = nowNs;
                    backend = e.Backend;
                    backendPort = e.BackendPort;
                    return true;
                }
            }
        }
        backend = default;
        backendPort = 0;
        return false;
    }

    /// <summary>Records (or refreshes) the client's backend for the frontend.</summary>
    public void Set(IpAddress client, IpAddress vip, ushort port, byte protocol, IpAddress backend, ushort backendPort, long nowNs)
    {
        var key = new Key(client, vip, port, protocol);
        int h = key.Hash();
        var shard = _shards[h & _shardMask];
        int baseSlot = (h >>> 8) & _slotMask;
        lock (shard)
        {
            int victim = -1, free = -1, oldestSlot = -1;
            long oldest = long.MaxValue;
            for (int i = 0; i < ProbeLength; i++)
            {
                int s = (baseSlot + i) & _slotMask;
                ref var e = ref shard.Entries[s];
                if (!e.Used)
                {
                    free = free < 0 ? s : free;
                }
                else if (e.Key.Equals(in key))
                {
                    victim = s;
                    break;
                }
                else if (e.LastUsedNs < oldest)
                {
                    oldest = e.LastUsedNs;
                    oldestSlot = s;
                }
            }
            if (victim < 0)
            {
                victim = free >= 0 ? free : oldestSlot;
            }
            shard.Entries[victim] = new Entry { Key = key, Backend = backend, BackendPort = backendPort, LastUsedNs = nowNs, Used = true };
        }
    }

    /// <summary>Forgets every entry pointing at a backend (it was removed).</summary>
    public int RemoveBackend(IpAddress backend, ushort backendPort)
    {
        int n = 0;
        foreach (var shard in _shards)
        {
            lock (shard)
            {
                for (int i = 0; i < shard.Entries.Length; i++)
                {
                    ref var e = ref shard.Entries[i];
                    if (e.Used && e.Backend == backend && e.BackendPort == backendPort)
                    {
                        e.Used = false;
                        n++;
                    }
                }
            }
        }
        return n;
    }

    private sealed class Shard(int size)
    {
        public readonly Entry[] Entries = new Entry[size];
    }

    private struct Entry
    {
        public Key Key;
        public IpAddress Backend;
        public long LastUsedNs;
        public ushort BackendPort;
        public bool Used;
    }

    private readonly struct Key(IpAddress client, IpAddress vip, ushort port, byte protocol)
    {
        private readonly IpAddress _client = client, _vip = vip;
        private readonly ushort _port = port;
        private readonly byte _protocol = protocol;

        public int Hash() => (int)((uint)HashCode.Combine(_client, _vip, _port, _protocol) * 0x9E3779B1u);

        public bool Equals(in Key o) => _port == o._port && _protocol == o._protocol && _client == o._client && _vip == o._vip;
    }
}
