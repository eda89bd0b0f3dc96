using Gateway.Node.Metrics;

namespace Gateway.Node.Bandwidth;

public sealed partial class BandwidthManager
{
    /// <summary>The bandwidth manager's Prometheus samples, per pod with a limit.</summary>
    public void Render(PrometheusText text, string name)
    {
        var endpoints = Endpoints;
        text.Describe("gateway_bandwidth_limit_bits_per_second", "gauge", "A pod's rate limit from its kubernetes.io/egress-bandwidth or ingress-bandwidth annotation.");
        foreach (var e in endpoints)
        {
            if (e.EgressBitsPerSecond > 0)
            {
                text.Sample("gateway_bandwidth_limit_bits_per_second", e.EgressBitsPerSecond, ("interface", name), ("endpoint", e.Name), ("direction", "EGRESS"));
            }
            if (e.IngressBitsPerSecond > 0)
            {
                text.Sample("gateway_bandwidth_limit_bits_per_second", e.IngressBitsPerSecond, ("interface", name), ("endpoint", e.Name), ("direction", "INGRESS"));
            }
        }
        text.Describe("gateway_bandwidth_paced_bytes_total", "counter", "Bytes of a pod's egress packets that waited for their departure time and were sent by the pacer.");
        foreach (var e in endpoints)
        {
            text.Sample("gateway_bandwidth_paced_bytes_total", e.PacedByteCount, ("interface", name), ("endpoint", e.Name));
        }
        text.Describe("gateway_bandwidth_paced_packets_total", "counter", "A pod's egress packets sent by the pacer after waiting.");
        foreach (var e in endpoints)
        {
            text.Sample("gateway_bandwidth_paced_packets_total", e.PacedPacketCount, ("interface", name), ("endpoint", e.Name));
        }
        text.Describe("gateway_bandwidth_queue_depth", "gauge", "A pod's egress packets waiting for their departure time now.");
        foreach (var e in endpoints)
        {
            text.Sample("gateway_bandwidth_queue_depth", e.QueueDepth, ("interface", name), ("endpoint", e.Name));
        }
        text.Describe("gateway_bandwidth_queue_bytes", "gauge", "Bytes of a pod's egress packets waiting now.");
        foreach (var e in endpoints)
        {
            text.Sample("gateway_bandwidth_queue_bytes", e.QueuedBytes, ("interface", name), ("endpoint", e.Name));
        }
        text.Describe("gateway_bandwidth_drop_count_total", "counter",
            "A pod's packets dropped by its limit: EGRESS beyond the 2 s EDT horizon (REACHED_EDT_RATE_LIMITING_DROP_HORIZON) or with its queue full, INGRESS by the empty token bucket.");
        foreach (var e in endpoints)
        {
            text.Sample("gateway_bandwidth_drop_count_total", e.HorizonDropCount, ("interface", name), ("endpoint", e.Name), ("direction", "EGRESS"), ("reason", "horizon"));
            text.Sample("gateway_bandwidth_drop_count_total", e.QueueFullDropCount, ("interface", name), ("endpoint", e.Name), ("direction", "EGRESS"), ("reason", "queue_full"));
            text.Sample("gateway_bandwidth_drop_count_total", e.IngressDropCount, ("interface", name), ("endpoint", e.Name), ("direction", "INGRESS"), ("reason", "token_bucket"));
        }
    }
}
