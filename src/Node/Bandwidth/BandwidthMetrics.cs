using Gateway.Node.Metrics;
using Gateway.Node.Overlay;

namespace Gateway.Node.Bandwidth;

/// <summary>The bandwidth manager's instruments (meter Gateway.Bandwidth), one series per pod with a
/// limit; read at collection time from the manager's counters (nothing per packet).</summary>
internal static class BandwidthMetrics
{
    public const string Area = "Bandwidth";

    public static void Add(GatewayMeters meters, OverlayRuntime overlay)
    {
        IReadOnlyList<EndpointShaping> Pods() => overlay.Bandwidth?.Endpoints ?? [];
        meters.Gauge(Area, "gateway_bandwidth_limit_bits_per_second", "A pod's rate limit from its kubernetes.io/egress-bandwidth or ingress-bandwidth annotation.",
            () => Pods().SelectMany(e => new[]
            {
                (e, "EGRESS", e.EgressBitsPerSecond),
                (e, "INGRESS", e.IngressBitsPerSecond),
            }).Where(x => x.Item3 > 0).Select(x => meters.Sample((double)x.Item3, ("endpoint", x.e.Name), ("direction", x.Item2))));
        meters.Counter(Area, "gateway_bandwidth_paced_bytes_total", "Bytes of a pod's egress packets sent by the pacer at their departure times.",
            () => Pods().Select(e => meters.Sample(e.PacedByteCount, ("endpoint", e.Name))));
        meters.Counter(Area, "gateway_bandwidth_paced_packets_total", "A pod's egress packets sent by the pacer at their departure times.",
            () => Pods().Select(e => meters.Sample(e.PacedPacketCount, ("endpoint", e.Name))));
        meters.Gauge(Area, "gateway_bandwidth_queue_depth", "A pod's egress packets waiting for their departure time now.",
            () => Pods().Select(e => meters.Sample((double)e.QueueDepth, ("endpoint", e.Name))));
        meters.Gauge(Area, "gateway_bandwidth_queue_bytes", "Bytes of a pod's egress packets waiting now.",
            () => Pods().Select(e => meters.Sample((double)e.QueuedBytes, ("endpoint", e.Name))));
        meters.Counter(Area, "gateway_bandwidth_drop_count_total",
            "A pod's packets dropped by its limit: EGRESS beyond the 2 s EDT horizon (horizon) or with its queue full (queue_full), INGRESS by the empty token bucket (token_bucket).",
            () => Pods().SelectMany(e => new[]
            {
                meters.Sample(e.HorizonDropCount, ("endpoint", e.Name), ("direction", "EGRESS"), ("reason", "horizon")),
                meters.Sample(e.QueueFullDropCount, ("endpoint", e.Name), ("direction", "EGRESS"), ("reason", "queue_full")),
                meters.Sample(e.IngressDropCount, ("endpoint", e.Name), ("direction", "INGRESS"), ("reason", "token_bucket")),
            }));
    }
}
