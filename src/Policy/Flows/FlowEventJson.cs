using System.Text;
using System.Text.Json;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Writes a flow event as Hubble-style JSON (field names as in `hubble observe -o json`):
/// time, verdict, drop_reason_desc, IP, l4, source, destination, traffic_direction, is_reply,
/// plus {ingress,egress}_{allowed,denied}_by naming the deciding policy. Names, labels and pods
/// are looked up in the snapshot given (allocation here is fine: this runs off the datapath).
/// </summary>
public static class FlowEventJson
{
    public static string Serialize(in FlowEvent e, PolicySnapshot? snapshot)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            Write(w, e, snapshot);
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Formats Unix nanoseconds as RFC 3339 with all nine fraction digits, as Hubble prints it.</summary>
    public static string FormatTime(long unixNs)
    {
        long seconds = Math.DivRem(unixNs, 1_000_000_000L, out long nanos);
        if (nanos < 0)
        {
            seconds--;
            nanos += 1_000_000_000L;
        }
        var time = DateTimeOffset.FromUnixTimeSeconds(seconds).UtcDateTime;
        return time.ToString("yyyy-MM-dd'T'HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture) +
            "." + nanos.ToString("D9", System.Globalization.CultureInfo.InvariantCulture) + "Z";
    }

    /// <param name="snapshot">Resolves labels, namespaces and pod names (may be null).</param>
    /// <param name="decidedBy">The snapshot the verdict came from, when the caller kept it (rule ids
    /// index one compiled snapshot); defaults to <paramref name="snapshot"/>.</param>
    /// <param name="nodeName">Written as <c>node_name</c> when given.</param>
    public static void Write(Utf8JsonWriter w, in FlowEvent e, PolicySnapshot? snapshot, PolicySnapshot? decidedBy = null, string? nodeName = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject();
        w.WriteString("time", FormatTime(e.TimeUnixNs));
        w.WriteString("verdict", e.Verdict switch
        {
            FlowVerdict.Forwarded => "FORWARDED",
            FlowVerdict.Dropped => "DROPPED",
            _ => "ERROR",
        });
        if (e.Verdict != FlowVerdict.Forwarded)
        {
            w.WriteNumber("drop_reason", (int)e.DropReason);
            w.WriteString("drop_reason_desc", FlowEvent.DropReasonName(e.DropReason));
        }
        w.WriteStartObject("IP");
        w.WriteString("source", e.Key.Source.ToString());
        w.WriteString("destination", e.Key.Destination.ToString());
        w.WriteString("ipVersion", e.Key.Source.IsV6 ? "IPv6" : "IPv4");
        w.WriteBoolean("encrypted", e.Encrypted);
        w.WriteEndObject();
        WriteL4(w, e.Key);
        WritePeer(w, "source", e.SourceIdentity, e.Key.Source, snapshot);
        WritePeer(w, "destination", e.DestinationIdentity, e.Key.Destination, snapshot);
        if (e.DestinationService is { } service)
        {
            // Hubble's destination_service; IP.destination and l4 hold the backend chosen for it.
            int slash = service.IndexOf('/', StringComparison.Ordinal);
            w.WriteStartObject("destination_service");
            w.WriteString("name", slash < 0 ? service : service[(slash + 1)..]);
            if (slash > 0)
            {
                w.WriteString("namespace", service[..slash]);
            }
            w.WriteEndObject();
        }
        w.WriteString("Type", "L3_L4");
        if (nodeName is not null)
        {
            w.WriteString("node_name", nodeName);
        }
        w.WriteString("traffic_direction", PolicyText.DirectionName(e.TrafficDirection));
        w.WriteBoolean("is_reply", e.IsReply);
        var rules = decidedBy is not null && decidedBy.Version == e.PolicyVersion ? decidedBy
            : snapshot is not null && snapshot.Version == e.PolicyVersion ? snapshot
            : null;
        // Rule ids index one compiled snapshot; from any other version they would name the wrong rule.
        if (rules is not null && e.RuleId >= 0 && e.RuleId < rules.Rules.Count)
        {
            var rule = rules.Rules[e.RuleId];
            string field = (e.TrafficDirection == Direction.Ingress ? "ingress_" : "egress_") +
                           (e.Verdict == FlowVerdict.Forwarded ? "allowed_by" : "denied_by");
            w.WriteStartArray(field);
            w.WriteStartObject();
            w.WriteString("name", rule.PolicyName);
            if (rule.Namespace is not null)
            {
                w.WriteString("namespace", rule.Namespace);
            }
            w.WriteString("kind", rule.Kind.ToString());
            w.WriteString("file", rule.File);
            w.WriteString("rule", rule.Path);
            w.WriteEndObject();
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    private static void WriteL4(Utf8JsonWriter w, in FlowKey k)
    {
        w.WriteStartObject("l4");
        switch (k.Protocol)
        {
            case IpProtocol.Tcp:
                w.WriteStartObject("TCP");
                w.WriteNumber("source_port", k.SourcePort);
                w.WriteNumber("destination_port", k.DestinationPort);
                w.WriteStartObject("flags");
                if ((k.TcpFlags & TcpFlag.Fin) != 0) w.WriteBoolean("FIN", true);
                if ((k.TcpFlags & TcpFlag.Syn) != 0) w.WriteBoolean("SYN", true);
                if ((k.TcpFlags & TcpFlag.Rst) != 0) w.WriteBoolean("RST", true);
                if ((k.TcpFlags & TcpFlag.Psh) != 0) w.WriteBoolean("PSH", true);
                if ((k.TcpFlags & TcpFlag.Ack) != 0) w.WriteBoolean("ACK", true);
                if ((k.TcpFlags & TcpFlag.Urg) != 0) w.WriteBoolean("URG", true);
                w.WriteEndObject();
                w.WriteEndObject();
                break;
            case IpProtocol.Udp:
            case IpProtocol.Sctp:
                w.WriteStartObject(k.Protocol == IpProtocol.Udp ? "UDP" : "SCTP");
                w.WriteNumber("source_port", k.SourcePort);
                w.WriteNumber("destination_port", k.DestinationPort);
                w.WriteEndObject();
                break;
            case IpProtocol.Icmp:
            case IpProtocol.Icmpv6:
                w.WriteStartObject(k.Protocol == IpProtocol.Icmp ? "ICMPv4" : "ICMPv6");
                w.WriteNumber("type", k.IcmpType);
                w.WriteNumber("code", k.IcmpCode);
                w.WriteEndObject();
                break;
        }
        w.WriteEndObject();
    }

    private static void WritePeer(Utf8JsonWriter w, string name, uint identity, IpAddress ip, PolicySnapshot? snapshot)
    {
        w.WriteStartObject(name);
        w.WriteNumber("identity", identity);
        if (snapshot is not null)
        {
            if (snapshot.TryGetIdentity(identity, out var id))
            {
                w.WriteStartArray("labels");
                foreach (var l in id.Labels)
                {
                    w.WriteStringValue(l.ToString());
                }
                w.WriteEndArray();
            }
            if (snapshot.Endpoints.TryGetByIp(ip, out var ep))
            {
                if (ep.Namespace is not null)
                {
                    w.WriteString("namespace", ep.Namespace);
                }
                w.WriteString("pod_name", ep.Name);
            }
        }
        w.WriteEndObject();
    }
}
