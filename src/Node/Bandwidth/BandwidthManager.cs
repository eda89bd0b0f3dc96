using System.Buffers.Binary;
using System.Collections.Frozen;
using Gateway.Datapath;
using Gateway.Datapath.Shaping;
using Gateway.Policy;

namespace Gateway.Node.Bandwidth;

/// <summary>What the egress limit did with a packet from a pod.</summary>
public enum EgressDecision : byte
{
    /// <summary>No limit: the packet continues on the normal send path now.</summary>
    Pass,
    /// <summary>Copied into the pod's departure queue: the pacer sends it at its departure time
    /// (now, when the pod is within its rate).</summary>
    Held,
    /// <summary>Dropped (beyond the 2 s horizon, or the pod's queue is full), counted, flow event written.</summary>
    Dropped,
}

/// <summary>
/// Gateway's bandwidth manager, after Cilium's: the <c>kubernetes.io/egress-bandwidth</c> of a
/// local pod is enforced with earliest departure times (<see cref="EdtSchedule"/>, 2 s horizon)
/// on the pod's own IP packets before VXLAN and WireGuard, so encryption never defeats it (the
/// gap of cilium/cilium#22203); packets that must wait are held in the pod's bounded
/// <see cref="DepartureQueue"/> until <see cref="EgressPacer"/> sends them. The
/// <c>kubernetes.io/ingress-bandwidth</c> of a local pod is a one-second <see cref="TokenBucket"/>
/// on packets delivered to it, dropping when empty. The wire length charged is the IP packet's
/// (TUN carries no link header). Time comes from the injected clock. Per packet nothing is
/// allocated; a reload (<see cref="Apply"/>) swaps the lookup table in one reference write and
/// keeps each staying pod's state, so running flows continue at the new rate.
/// </summary>
public sealed class BandwidthManager
{
    /// <summary>Departures this close ahead are released with the current batch (timer slack).</summary>
    public const long ReleaseSlackNs = 20_000;

    /// <summary>The most memory one pod's departure queue may take.</summary>
    public const int MaxQueueBytes = 64 << 20;

    private readonly TimeProvider _clock;
    private readonly double _nsPerTick;
    private readonly PolicyEngine? _policy;
    private FrozenDictionary<IpAddress, EndpointShaping> _byIp = FrozenDictionary<IpAddress, EndpointShaping>.Empty;
    private EndpointShaping[] _all = [];
    private readonly Dictionary<string, EndpointShaping> _byName = new(StringComparer.Ordinal);
    private long _nextWakeNs = long.MaxValue;
    private int _releaseStart;

    /// <param name="clock">The clock of the schedules and buckets (a high-resolution one in the daemon).</param>
    /// <param name="policy">Where flow events for drops go, and the identities they carry (null: none).</param>
    public BandwidthManager(TimeProvider clock, PolicyEngine? policy = null)
    {
        _clock = clock ?? throw new ArgumentNullException(nameof(clock));
        _nsPerTick = 1_000_000_000.0 / clock.TimestampFrequency;
        _policy = policy;
    }

    /// <summary>Woken when a packet is queued ahead of the pacer's next planned wake-up.</summary>
    public PreciseWaiter? Waiter { get; set; }

    /// <summary>The clock, in nanoseconds.</summary>
    public long NowNs => (long)(_clock.GetTimestamp() * _nsPerTick);

    /// <summary>The pods with a limit, in endpoints-file order.</summary>
    public IReadOnlyList<EndpointShaping> Endpoints => Volatile.Read(ref _all);

    /// <summary>True if any local pod has a limit (the data path skips everything otherwise).</summary>
    public bool Active => Volatile.Read(ref _all).Length > 0;

    /// <summary>
    /// Applies the limits of the pods in <paramref name="endpoints"/> whose addresses
    /// <paramref name="isLocal"/> says live on this node (the other nodes enforce their own). A limit
    /// in <paramref name="stored"/> (cluster mode: etcd, by <c>namespace/name</c>) overrides the
    /// endpoint's own annotation of the same direction.
    /// </summary>
    public void Apply(IEnumerable<Endpoint> endpoints, Func<IpAddress, bool> isLocal, IReadOnlyDictionary<string, BandwidthLimits>? stored = null)
    {
        lock (_byName)
        {
            var byIp = new Dictionary<IpAddress, EndpointShaping>();
            var all = new List<EndpointShaping>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var endpoint in endpoints)
            {
                var limits = LimitsOf(endpoint, stored);
                if (!endpoint.IsWorkload || !limits.Any)
                {
                    continue;
                }
                var ips = endpoint.Ips.Where(isLocal).ToArray();
                if (ips.Length == 0)
                {
                    continue;
                }
                string name = endpoint.QualifiedName;
                if (!_byName.TryGetValue(name, out var shaping))
                {
                    shaping = new EndpointShaping(name, endpoint.Identity.Id, ips);
                    _byName[name] = shaping;
                }
                shaping.Identity = endpoint.Identity.Id;
                shaping.Ips = ips;
                shaping.SetLimits(limits.EgressBitsPerSecond, limits.IngressBitsPerSecond, QueueBytesFor(limits.EgressBitsPerSecond));
                seen.Add(name);
                all.Add(shaping);
                foreach (var ip in ips)
                {
                    byIp[ip] = shaping;
                }
            }
            foreach (var gone in _byName.Keys.Where(n => !seen.Contains(n)).ToList())
            {
                var shaping = _byName[gone];
                shaping.SetLimits(0, 0, 0);
                lock (shaping.Gate)
                {
                    shaping.Queue?.Clear();
                }
                _byName.Remove(gone);
            }
            Volatile.Write(ref _byIp, byIp.ToFrozenDictionary());
            Volatile.Write(ref _all, all.ToArray());
        }
        Waiter?.Wake();
    }

    /// <summary>An endpoint's limits: its annotations, each direction overridden by a stored limit.</summary>
    public static BandwidthLimits LimitsOf(Endpoint endpoint, IReadOnlyDictionary<string, BandwidthLimits>? stored)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var own = endpoint.Bandwidth;
        if (stored is null || !stored.TryGetValue(endpoint.QualifiedName, out var set))
        {
            return own;
        }
        return new BandwidthLimits(set.EgressBitsPerSecond > 0 ? set.EgressBitsPerSecond : own.EgressBitsPerSecond,
            set.IngressBitsPerSecond > 0 ? set.IngressBitsPerSecond : own.IngressBitsPerSecond);
    }

    /// <summary>Queue memory for a rate: the horizon's worth of bytes plus record overhead, bounded.</summary>
    internal static int QueueBytesFor(long bitsPerSecond)
    {
        if (bitsPerSecond <= 0)
        {
            return 0;
        }
        long horizonBytes = bitsPerSecond / 8 * (EdtSchedule.DefaultHorizonNs / 1_000_000_000);
        return (int)Math.Clamp(horizonBytes + horizonBytes / 4 + (64 << 10), 64 << 10, MaxQueueBytes);
    }

    /// <summary>
    /// The egress limit for one IP packet read from TUN (before policy, VXLAN and WireGuard).
    /// <see cref="EgressDecision.Held"/> means the packet was copied: the caller's buffer is free.
    /// </summary>
    public EgressDecision Egress(ReadOnlySpan<byte> packet)
    {
        var byIp = Volatile.Read(ref _byIp);
        if (byIp.Count == 0 || !TryAddress(packet, source: true, out var source) || !byIp.TryGetValue(source, out var shaping))
        {
            return EgressDecision.Pass;
        }
        long now = NowNs;
        long departure;
        lock (shaping.Gate)
        {
            var schedule = shaping.Egress;
            var queue = shaping.Queue;
            if (schedule is null || queue is null)
            {
                return EgressDecision.Pass;
            }
            // Every packet of a limited pod leaves through the pacer, even one that may go at once:
            // two paths (the send path's batches and the pacer's) would reorder the pod's packets,
            // and TCP reads reordering as loss.
            var verdict = schedule.Schedule(now, packet.Length, out departure);
            if (verdict == EdtVerdict.Send)
            {
                shaping.SentImmediatelyPackets++;
                shaping.SentImmediatelyBytes += packet.Length;
            }
            if (verdict == EdtVerdict.Drop)
            {
                shaping.HorizonDrops++;
            }
            else if (!queue.TryEnqueue(departure, packet))
            {
                shaping.QueueFullDrops++;
                verdict = EdtVerdict.Drop;
            }
            else
            {
                if (queue.Count > shaping.MaxQueueDepth)
                {
                    shaping.MaxQueueDepth = queue.Count;
                }
                verdict = EdtVerdict.Wait;
            }
            if (verdict == EdtVerdict.Drop)
            {
                departure = -1;
            }
        }
        if (departure < 0)
        {
            ReportDrop(packet, Direction.Egress, shaping.Identity);
            return EgressDecision.Dropped;
        }
        if (departure < Volatile.Read(ref _nextWakeNs))
        {
            Waiter?.Wake();
        }
        return EgressDecision.Held;
    }

    /// <summary>The ingress limit for one IP packet about to be delivered to a local pod: true to deliver.</summary>
    public bool AdmitIngress(ReadOnlySpan<byte> packet)
    {
        var byIp = Volatile.Read(ref _byIp);
        if (byIp.Count == 0 || !TryAddress(packet, source: false, out var destination) || !byIp.TryGetValue(destination, out var shaping))
        {
            return true;
        }
        long now = NowNs;
        lock (shaping.Gate)
        {
            var bucket = shaping.Ingress;
            if (bucket is null)
            {
                return true;
            }
            if (bucket.TryTake(now, packet.Length))
            {
                shaping.IngressPassedBytes += packet.Length;
                return true;
            }
            shaping.IngressDrops++;
        }
        ReportDrop(packet, Direction.Ingress, shaping.Identity);
        return false;
    }

    /// <summary>
    /// The pacer's half: moves packets whose departure time has come (within
    /// <see cref="ReleaseSlackNs"/>) into <paramref name="buffers"/> (data at the buffer's headroom),
    /// at most buffers.Length, taking pods in turn. <paramref name="nextDepartureNs"/> is the earliest
    /// departure still waiting (long.MaxValue: none). Returns the number of packets moved.
    /// </summary>
    public int Release(long nowNs, ReadOnlySpan<PacketBuffer> buffers, int headroom, out long nextDepartureNs)
    {
        var all = Volatile.Read(ref _all);
        nextDepartureNs = long.MaxValue;
        int n = 0;
        if (all.Length == 0)
        {
            return 0;
        }
        int start = _releaseStart++ % all.Length;
        for (int k = 0; k < all.Length; k++)
        {
            var shaping = all[(start + k) % all.Length];
            lock (shaping.Gate)
            {
                var queue = shaping.Queue;
                if (queue is null)
                {
                    continue;
                }
                while (queue.TryPeek(out long departure, out int length))
                {
                    if (departure > nowNs + ReleaseSlackNs || n == buffers.Length)
                    {
                        nextDepartureNs = Math.Min(nextDepartureNs, departure);
                        break;
                    }
                    var buffer = buffers[n];
                    buffer.Reset(headroom);
                    if (length > buffer.Tailroom)
                    {
                        queue.Skip(); // not expected: the queue holds packets read from TUN
                        shaping.QueueFullDrops++;
                        continue;
                    }
                    queue.Dequeue(buffer.Region[headroom..]);
                    buffer.SetLength(length);
                    shaping.PacedPackets++;
                    shaping.PacedBytes += length;
                    n++;
                }
            }
        }
        return n;
    }

    /// <summary>The pacer publishes when it will look next; a packet due earlier wakes it.
    /// long.MaxValue while it scans (any new packet wakes it then).</summary>
    public void PlanWake(long ns) => Volatile.Write(ref _nextWakeNs, ns);

    private void ReportDrop(ReadOnlySpan<byte> packet, Direction direction, uint podIdentity)
    {
        if (_policy is null || FlowParser.ParseIp(packet, out var key, out _) != ParseStatus.Ok)
        {
            return;
        }
        var snapshot = _policy.Current;
        _policy.Events.TryWrite(new FlowEvent
        {
            TimeUnixNs = (_clock.GetUtcNow().UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100,
            Verdict = FlowVerdict.Dropped,
            DropReason = DropReason.EdtHorizon,
            TrafficDirection = direction,
            Encrypted = true,
            Key = key,
            SourceIdentity = direction == Direction.Egress ? podIdentity : snapshot.IpCache.Lookup(key.Source),
            DestinationIdentity = direction == Direction.Ingress ? podIdentity : snapshot.IpCache.Lookup(key.Destination),
            RuleId = -1,
            PolicyVersion = snapshot.Version,
        });
    }

    /// <summary>The source or destination address of an IPv4/IPv6 packet, read from its header.</summary>
    private static bool TryAddress(ReadOnlySpan<byte> packet, bool source, out IpAddress address)
    {
        address = default;
        if (packet.Length >= 20 && packet[0] >> 4 == 4)
        {
            address = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(packet[(source ? 12 : 16)..]));
            return true;
        }
        if (packet.Length >= 40 && packet[0] >> 4 == 6)
        {
            address = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(packet[(source ? 8 : 24)..]));
            return true;
        }
        return false;
    }
}
