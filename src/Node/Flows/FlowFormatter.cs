using System.Globalization;
using System.Text;

namespace Gateway.Node.Flows;

/// <summary>
/// <c>hubble observe</c>'s compact line for a flow:
/// <code>
/// Nov 28 13:00:00.123: default/frontend-1:34567 (ID:256) -> default/backend-1:80 (ID:257) policy-verdict:default/allow-web INGRESS FORWARDED (TCP Flags: SYN)
/// Nov 28 13:00:01.456: default/frontend-1:41000 (ID:256) -> default/db-1:5432 (ID:258) policy-verdict:none EGRESS DROPPED (Policy denied)
/// </code>
/// Times are UTC (Hubble prints local time; a node log is easier to compare across nodes in UTC).
/// A reply is printed with the arrow reversed and the sides swapped, as Hubble does, so the client
/// stays on the left.
/// </summary>
public static class FlowFormatter
{
    public static string Compact(FlowRecord flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        var sb = new StringBuilder(160);
        var t = flow.Time;
        // Go's time.StampMilli: "Jan _2 15:04:05.000" (day padded with a space).
        sb.Append(t.ToString("MMM", CultureInfo.InvariantCulture)).Append(' ')
          .Append(t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2))
          .Append(t.ToString(" HH:mm:ss.fff", CultureInfo.InvariantCulture)).Append(": ");
        string src = Side(flow.Source, flow.SourceIp, flow.SourcePort, flow.L4Protocol);
        string dst = Side(flow.Destination, flow.DestinationIp, flow.DestinationPort, flow.L4Protocol);
        if (flow.IsReply)
        {
            sb.Append(dst).Append(" <- ").Append(src);
        }
        else
        {
            sb.Append(src).Append(" -> ").Append(dst);
        }
        if (flow.DestinationService is not null)
        {
            // Hubble prints the service after the backend it was translated to.
            sb.Append(" service:").Append(flow.DestinationService);
        }
        sb.Append(" policy-verdict:").Append(flow.PolicyName ?? "none");
        if (flow.TrafficDirection is not null)
        {
            sb.Append(' ').Append(flow.TrafficDirection);
        }
        sb.Append(' ').Append(flow.Verdict);
        string summary = flow.Verdict == "FORWARDED" ? L4Summary(flow) : DropText(flow.DropReasonDesc);
        if (summary.Length > 0)
        {
            sb.Append(" (").Append(summary).Append(')');
        }
        return sb.ToString();
    }

    /// <summary>Cilium's wording for the drop reasons the log uses (pkg/monitor/api/drop.go).</summary>
    public static string DropText(string? desc) => desc switch
    {
        null => "",
        "POLICY_DENIED" => "Policy denied",
        "POLICY_DENY" => "Policy denied by denylist",
        "INVALID_PACKET" or "INVALID_PACKET_DROPPED" => "Invalid packet",
        "INVALID_SOURCE_IP" => "Invalid source ip",
        "UNSUPPORTED_L3_PROTOCOL" => "Unsupported L3 protocol",
        "UNKNOWN_L3_TARGET_ADDRESS" => "Unknown L3 target address",
        "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT" => "No tunnel/encapsulation endpoint",
        "ENCAPSULATION_TRAFFIC_IS_PROHIBITED" => "Encapsulation traffic is prohibited",
        "INVALID_IDENTITY" => "Invalid identity",
        "UNKNOWN_SENDER" => "Unknown sender",
        "TUNNEL" => "Refused by the tunnel",
        "NO_SERVICE" => "Service backend not found",
        _ => desc,
    };

    private static string Side(FlowPeer peer, string? ip, int port, string? l4)
    {
        string host = peer.PodName is not null
            ? (peer.Namespace is null ? peer.PodName : peer.Namespace + "/" + peer.PodName)
            : ip ?? "?";
        bool hasPort = l4 is "TCP" or "UDP" or "SCTP";
        string where = !hasPort ? host
            : peer.PodName is null && host.Contains(':') ? $"[{host}]:{port}"
            : $"{host}:{port}";
        return $"{where} ({IdentityText(peer)})";
    }

    /// <summary>Reserved identities by name, as Hubble prints them ("world", "host"); others as ID:n.</summary>
    private static string IdentityText(FlowPeer peer)
    {
        const uint firstAllocated = 256;
        const uint localScope = 1u << 24;
        if (peer.Identity < firstAllocated || peer.Identity >= localScope)
        {
            foreach (var label in peer.Labels)
            {
                if (label.StartsWith("reserved:", StringComparison.Ordinal))
                {
                    return label["reserved:".Length..];
                }
            }
        }
        return "ID:" + peer.Identity.ToString(CultureInfo.InvariantCulture);
    }

    private static string L4Summary(FlowRecord flow) => flow.L4Protocol switch
    {
        "TCP" => flow.TcpFlags.Count > 0 ? "TCP Flags: " + string.Join(", ", flow.TcpFlags) : "TCP",
        "ICMPv4" => "ICMPv4 " + IcmpName(flow.IcmpType, v6: false),
        "ICMPv6" => "ICMPv6 " + IcmpName(flow.IcmpType, v6: true),
        null => "",
        var other => other,
    };

    private static string IcmpName(int type, bool v6) => (v6, type) switch
    {
        (false, 0) => "EchoReply",
        (false, 3) => "DestinationUnreachable",
        (false, 8) => "EchoRequest",
        (false, 11) => "TimeExceeded",
        (true, 1) => "DestinationUnreachable",
        (true, 2) => "PacketTooBig",
        (true, 3) => "TimeExceeded",
        (true, 128) => "EchoRequest",
        (true, 129) => "EchoReply",
        (true, 135) => "NeighborSolicitation",
        (true, 136) => "NeighborAdvertisement",
        _ => "type " + type.ToString(CultureInfo.InvariantCulture),
    };
}
