using System.Globalization;
using System.Text;
using System.Text.Json;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Node.Bandwidth;

/// <summary>One row of `gateway bandwidth list`: a pod's limit in one direction.</summary>
public readonly record struct BandwidthEntry(string Endpoint, uint Identity, string Direction, long BitsPerSecond, IReadOnlyList<IpAddress> Ips);

/// <summary>
/// `gateway bandwidth list`, like `cilium-dbg bpf bandwidth list`: each pod with a
/// kubernetes.io/egress-bandwidth or ingress-bandwidth annotation, its identity, the direction and
/// the rate, as text or JSON.
/// </summary>
public static class BandwidthListing
{
    /// <summary>The limits of <paramref name="endpoints"/>; with <paramref name="podCidrs"/> only the pods
    /// inside them (what the node owning those CIDRs enforces); with <paramref name="stored"/> (etcd, by
    /// <c>namespace/name</c>) a stored limit overriding the annotation, as a node in cluster mode applies it.</summary>
    public static IReadOnlyList<BandwidthEntry> Entries(EndpointTable endpoints, IReadOnlyList<IpPrefix>? podCidrs = null,
        IReadOnlyDictionary<string, BandwidthLimits>? stored = null)
    {
        var rows = new List<BandwidthEntry>();
        foreach (var e in endpoints.All)
        {
            var limits = BandwidthManager.LimitsOf(e, stored);
            if (!e.IsWorkload || !limits.Any)
            {
                continue;
            }
            var ips = podCidrs is null ? e.Ips : e.Ips.Where(ip => podCidrs.Any(p => p.Contains(ip))).ToArray();
            if (ips.Count == 0)
            {
                continue;
            }
            if (limits.EgressBitsPerSecond > 0)
            {
                rows.Add(new BandwidthEntry(e.QualifiedName, e.Identity.Id, "EGRESS", limits.EgressBitsPerSecond, ips));
            }
            if (limits.IngressBitsPerSecond > 0)
            {
                rows.Add(new BandwidthEntry(e.QualifiedName, e.Identity.Id, "INGRESS", limits.IngressBitsPerSecond, ips));
            }
        }
        return rows;
    }

    /// <summary>Limits stored in etcd on their own (no endpoints file): by pod name, without identity
    /// (0) or addresses, which only the pod's node knows.</summary>
    public static IReadOnlyList<BandwidthEntry> Stored(IReadOnlyDictionary<string, BandwidthLimits> stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        var rows = new List<BandwidthEntry>();
        foreach (var (name, limits) in stored.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (limits.EgressBitsPerSecond > 0)
            {
                rows.Add(new BandwidthEntry(name, 0, "EGRESS", limits.EgressBitsPerSecond, []));
            }
            if (limits.IngressBitsPerSecond > 0)
            {
                rows.Add(new BandwidthEntry(name, 0, "INGRESS", limits.IngressBitsPerSecond, []));
            }
        }
        return rows;
    }

    public static string ToText(IReadOnlyList<BandwidthEntry> rows)
    {
        var table = new List<string[]> { new[] { "ENDPOINT", "IDENTITY", "DIRECTION", "BANDWIDTH (BitsPerSec)", "IPS" } };
        foreach (var r in rows)
        {
            table.Add([r.Endpoint, r.Identity == 0 ? "-" : r.Identity.ToString(CultureInfo.InvariantCulture), r.Direction,
                BandwidthAnnotations.Format(r.BitsPerSecond), r.Ips.Count == 0 ? "-" : string.Join(",", r.Ips)]);
        }
        int[] widths = Enumerable.Range(0, 5).Select(c => table.Max(row => row[c].Length)).ToArray();
        var sb = new StringBuilder();
        foreach (var row in table)
        {
            for (int c = 0; c < row.Length; c++)
            {
                sb.Append(c == row.Length - 1 ? row[c] : row[c].PadRight(widths[c] + 3));
            }
            sb.AppendLine();
        }
        if (rows.Count == 0)
        {
            sb.AppendLine("(no endpoint has a kubernetes.io/egress-bandwidth or ingress-bandwidth annotation)");
        }
        return sb.ToString();
    }

    public static string ToJson(IReadOnlyList<BandwidthEntry> rows)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            foreach (var r in rows)
            {
                w.WriteStartObject();
                w.WriteString("endpoint", r.Endpoint);
                if (r.Identity == 0)
                {
                    w.WriteNull("identity"); // stored limits listed without an endpoints file
                }
                else
                {
                    w.WriteNumber("identity", r.Identity);
                }
                w.WriteString("direction", r.Direction);
                w.WriteNumber("bits_per_second", r.BitsPerSecond);
                w.WriteStartArray("ips");
                foreach (var ip in r.Ips)
                {
                    w.WriteStringValue(ip.ToString());
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
