using System.Globalization;
using System.Text.Json;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Node.Flows;

/// <summary>
/// The flow log's JSON line for one <see cref="FlowEvent"/>: the fields of
/// <see cref="FlowEventJson"/> (Hubble's names: time, verdict, drop_reason(_desc), IP, l4,
/// source, destination, Type, traffic_direction, is_reply, {ingress,egress}_{allowed,denied}_by)
/// plus <c>node_name</c>, with the time in RFC 3339 with nanoseconds as Hubble prints it.
/// </summary>
/// <remarks>
/// This is a sibling of <see cref="FlowEventJson"/> rather than a wrapper: that writer closes the
/// object itself and prints 100 ns ticks, and the node needs <c>node_name</c> inside the object
/// and all nine fraction digits. Names, labels and rules are resolved in the snapshot given (the
/// one current when the line is written) or, for the deciding rule, in the snapshot the verdict
/// came from when the caller still has it. Allocation is fine here: this runs off the datapath.
/// </remarks>
public static class FlowLogJson
{
    /// <summary>Formats Unix nanoseconds as <c>2026-11-28T13:00:00.123456789Z</c>.</summary>
    public static string FormatTime(long unixNs)
    {
        long seconds = Math.DivRem(unixNs, 1_000_000_000L, out long nanos);
        if (nanos < 0)
        {
            seconds--;
            nanos += 1_000_000_000L;
        }
        var t = DateTimeOffset.FromUnixTimeSeconds(seconds).UtcDateTime;
        return t.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture) + "." +
               nanos.ToString("D9", CultureInfo.InvariantCulture) + "Z";
    }

    /// <summary>
    /// Hubble's name (flow.proto DropReason) for a drop reason number. The policy engine names its
    /// own three; the overlay pipeline records Cilium's other numbers in the same byte (see
    /// OverlayDrop), which are named here from Cilium's table.
    /// </summary>
    public static string DropReasonName(DropReason reason) => FlowEvent.DropReasonName(reason);

    /// <summary>Cilium's text for a drop reason (pkg/monitor/api/drop.go), used by the human output.</summary>
    public static string DropReasonText(DropReason reason) => FlowFormatter.DropText(DropReasonName(reason));

    /// <param name="current">The snapshot for labels, namespaces and pod names (may be null).</param>
    /// <param name="decidedBy">The snapshot whose <see cref="PolicySnapshot.Version"/> equals the event's
    /// <see cref="FlowEvent.PolicyVersion"/>, if the caller still has it; used for the deciding rule.</param>
    public static void Write(Utf8JsonWriter w, in FlowEvent e, PolicySnapshot? current, PolicySnapshot? decidedBy, string nodeName)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(nodeName);
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
            w.WriteString("drop_reason_desc", DropReasonName(e.DropReason));
        }
        w.WriteStartObject("IP");
        w.WriteString("source", e.Key.Source.ToString());
        w.WriteString("destination", e.Key.Destination.ToString());
        w.WriteString("ipVersion", e.Key.Source.IsV6 ? "IPv6" : "IPv4");
        w.WriteBoolean("encrypted", e.Encrypted);
        w.WriteEndObject();
        WriteL4(w, e.Key);
        WritePeer(w, "source", e.SourceIdentity, e.Key.Source, current);
        WritePeer(w, "destination", e.DestinationIdentity, e.Key.Destination, current);
        w.WriteString("Type", "L3_L4");
        w.WriteString("node_name", nodeName);
        w.WriteString("traffic_direction", PolicyText.DirectionName(e.TrafficDirection));
        w.WriteBoolean("is_reply", e.IsReply);
        var rules = decidedBy is not null && decidedBy.Version == e.PolicyVersion ? decidedBy
            : current is not null && current.Version == e.PolicyVersion ? current
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
                // Hubble's order (flow.proto TCPFlags): FIN SYN RST PSH ACK URG.
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
