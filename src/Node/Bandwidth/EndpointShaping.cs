using Gateway.Datapath;
using Gateway.Datapath.Shaping;

namespace Gateway.Node.Bandwidth;

/// <summary>
/// The rate-limit state of one local pod: its EDT schedule and departure queue (egress), its
/// token bucket (ingress) and its counters. Kept across reloads while the pod stays, so a changed
/// rate applies to flows already running without restarting them. The data path and the pacer
/// take <see cref="Gate"/> (uncontended most of the time; Lock allocates nothing).
/// </summary>
public sealed class EndpointShaping
{
    internal readonly Lock Gate = new();
    private long _egressBitsPerSecond;
    private long _ingressBitsPerSecond;

    internal EndpointShaping(string name, uint identity, IpAddress[] ips)
    {
        Name = name;
        Identity = identity;
        Ips = ips;
    }

    /// <summary>namespace/name.</summary>
    public string Name { get; }

    public uint Identity { get; internal set; }

    /// <summary>The pod's addresses on this node (its pod CIDRs).</summary>
    public IpAddress[] Ips { get; internal set; }

    /// <summary>Egress limit in bits per second; 0 = none.</summary>
    public long EgressBitsPerSecond => Volatile.Read(ref _egressBitsPerSecond);

    /// <summary>Ingress limit in bits per second; 0 = none.</summary>
    public long IngressBitsPerSecond => Volatile.Read(ref _ingressBitsPerSecond);

    internal EdtSchedule? Egress;
    internal DepartureQueue? Queue;
    internal TokenBucket? Ingress;

    // Counters (read by metrics and `bandwidth list` without the lock).
    internal long SentImmediatelyPackets;
    internal long SentImmediatelyBytes;
    internal long PacedPackets;
    internal long PacedBytes;
    internal long HorizonDrops;
    internal long QueueFullDrops;
    internal long IngressPassedBytes;
    internal long IngressDrops;
    internal long MaxQueueDepth;

    /// <summary>Packets that were within the rate on arrival (departure = now; the pacer still sends them, in order).</summary>
    public long ImmediatePackets => Interlocked.Read(ref SentImmediatelyPackets);

    /// <summary>Packets the pacer released (all sent packets of a limited pod).</summary>
    public long PacedPacketCount => Interlocked.Read(ref PacedPackets);

    /// <summary>Bytes released by the pacer.</summary>
    public long PacedByteCount => Interlocked.Read(ref PacedBytes);

    /// <summary>Egress packets dropped beyond the 2 s horizon (Cilium's DROP_EDT_HORIZON).</summary>
    public long HorizonDropCount => Interlocked.Read(ref HorizonDrops);

    /// <summary>Egress packets dropped because the pod's queue memory was full.</summary>
    public long QueueFullDropCount => Interlocked.Read(ref QueueFullDrops);

    /// <summary>Ingress packets dropped by the empty token bucket.</summary>
    public long IngressDropCount => Interlocked.Read(ref IngressDrops);

    public long IngressPassedByteCount => Interlocked.Read(ref IngressPassedBytes);

    /// <summary>Packets waiting now (a gauge).</summary>
    public int QueueDepth
    {
        get
        {
            lock (Gate)
            {
                return Queue?.Count ?? 0;
            }
        }
    }

    /// <summary>Bytes waiting now (a gauge).</summary>
    public long QueuedBytes
    {
        get
        {
            lock (Gate)
            {
                return Queue?.QueuedBytes ?? 0;
            }
        }
    }

    /// <summary>Sets the limits (a reload): schedules and buckets keep their position; a lifted egress
    /// limit lets queued packets go at once (the pacer sends them). Returns packets to release now.</summary>
    internal void SetLimits(long egressBitsPerSecond, long ingressBitsPerSecond, int queueCapacity)
    {
        lock (Gate)
        {
            if (egressBitsPerSecond > 0)
            {
                if (Egress is null)
                {
                    Egress = new EdtSchedule(egressBitsPerSecond);
                }
                else
                {
                    Egress.BitsPerSecond = egressBitsPerSecond;
                }
                Queue ??= new DepartureQueue(queueCapacity);
            }
            else
            {
                Egress = null; // queued packets stay and leave with their departure times
            }
            if (ingressBitsPerSecond > 0)
            {
                if (Ingress is null)
                {
                    Ingress = new TokenBucket(ingressBitsPerSecond);
                }
                else
                {
                    Ingress.BitsPerSecond = ingressBitsPerSecond;
                }
            }
            else
            {
                Ingress = null;
            }
            Volatile.Write(ref _egressBitsPerSecond, egressBitsPerSecond);
            Volatile.Write(ref _ingressBitsPerSecond, ingressBitsPerSecond);
        }
    }
}
