using System.Globalization;
using System.Text.Json;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Node.Flows;

/// <summary>
/// The flow log's JSON line for one <see cref="FlowEvent"/>: <see cref="FlowEventJson"/>'s
/// Hubble fields (time with nanoseconds, verdict, drop_reason(_desc), IP, l4, source,
/// destination, Type, traffic_direction, is_reply, {ingress,egress}_{allowed,denied}_by) plus
/// <c>node_name</c>, with the deciding rule taken from the snapshot the verdict came from.
/// </summary>
public static class FlowLogJson
{
    /// <summary>Formats Unix nanoseconds as <c>2026-11-28T13:00:00.123456789Z</c>.</summary>
    public static string FormatTime(long unixNs) => FlowEventJson.FormatTime(unixNs);

    /// <summary>Hubble's name (flow.proto DropReason) for a drop reason number.</summary>
    public static string DropReasonName(DropReason reason) => FlowEvent.DropReasonName(reason);

    /// <summary>Cilium's text for a drop reason (pkg/monitor/api/drop.go), used by the human output.</summary>
    public static string DropReasonText(DropReason reason) => FlowFormatter.DropText(DropReasonName(reason));

    /// <param name="current">The snapshot for labels, namespaces and pod names (may be null).</param>
    /// <param name="decidedBy">The snapshot whose <see cref="PolicySnapshot.Version"/> equals the event's
    /// <see cref="FlowEvent.PolicyVersion"/>, if the caller still has it; used for the deciding rule.</param>
    public static void Write(Utf8JsonWriter w, in FlowEvent e, PolicySnapshot? current, PolicySnapshot? decidedBy, string nodeName)
    {
        ArgumentNullException.ThrowIfNull(nodeName);
        FlowEventJson.Write(w, e, current, decidedBy, nodeName);
    }
}
