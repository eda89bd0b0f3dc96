using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Reads the endpoints file (YAML):
/// <code>
/// namespaces:                      # optional: namespace labels for namespaceSelector
///   - {name: prod, labels: {team: payments}}
/// endpoints:
///   - {name: frontend-1, namespace: default, ips: [10.0.0.10], labels: {app: frontend}}
///   - {name: backend-1, ips: [10.0.0.20], labels: {app: backend}, ports: [{name: http, port: 8080, protocol: TCP}]}
///   - {name: node-2, ips: [192.168.1.2], labels: {"reserved:remote-node": ""}}
/// </code>
/// Bare label keys get source k8s; a reserved: label makes the entry a reserved peer (host,
/// remote-node, ...) with Cilium's fixed identity. <c>ports</c> names workload ports (a pod's
/// containerPorts) so a Service's named targetPort can be resolved per backend; protocol defaults to TCP.
/// <c>ready: false</c> (EndpointSlice's conditions.ready; default true) keeps a pod out of every
/// service's backends while it keeps its identity and policy.
/// </summary>
public static class EndpointFile
{
    private static readonly string[] TopKeys = ["namespaces", "endpoints"];
    private static readonly string[] NamespaceKeys = ["name", "labels"];
    private static readonly string[] EndpointKeys = ["name", "namespace", "ips", "labels", "ports", "ready"];
    private static readonly string[] PortKeys = ["name", "port", "protocol"];

    public static EndpointTable Load(string path, IdentityAllocator identities)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(identities);
        return Parse(YNode.ReadFile(path), path, identities);
    }

    public static EndpointTable Parse(string text, string file, IdentityAllocator identities)
    {
        var table = new EndpointTable(identities);
        var docs = YNode.LoadDocuments(text, file);
        for (int d = 0; d < docs.Count; d++)
        {
            var root = new YNode(docs[d].RootNode, "", file, d + 1);
            if (root.IsNull)
            {
                continue;
            }
            root.CheckKeys(TopKeys);
            foreach (var ns in root["namespaces"].Items())
            {
                ns.CheckKeys(NamespaceKeys);
                string name = ns["name"].String();
                var labels = new Dictionary<string, string>(StringComparer.Ordinal);
                if (!ns["labels"].IsNull)
                {
                    foreach (var (k, v) in ns["labels"].Entries())
                    {
                        labels[k] = v.IsNull ? "" : v.String();
                    }
                }
                table.NamespaceLabels[name] = labels;
            }
            foreach (var ep in root["endpoints"].Items())
            {
                ep.CheckKeys(EndpointKeys);
                string name = ep["name"].String();
                string? ns = ep["namespace"].OptionalString();
                var ips = new List<IpAddress>();
                foreach (var ipNode in ep["ips"].Items())
                {
                    string s = ipNode.String();
                    if (!IpAddress.TryParse(s, out var ip))
                    {
                        throw ipNode.Error($"'{s}' is not an IP address");
                    }
                    ips.Add(ip);
                }
                var labels = new List<Label>();
                if (!ep["labels"].IsNull)
                {
                    foreach (var (k, v) in ep["labels"].Entries())
                    {
                        var (src, key) = Label.SplitSource(k, LabelSources.K8s);
                        if (src == LabelSources.Reserved && !ReservedIdentity.TryGetId(key, out _))
                        {
                            throw v.Error($"'{key}' is not a reserved identity (host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress)");
                        }
                        labels.Add(new Label(src, key, v.IsNull ? "" : v.String()));
                    }
                }
                var ports = new List<NamedPort>();
                foreach (var p in ep["ports"].Items())
                {
                    p.CheckKeys(PortKeys);
                    string portName = p["name"].String();
                    ushort number = (ushort)p["port"].Integer(1, 65535);
                    byte proto = PolicyLoader.ParseProtocol(p["protocol"], kubernetes: true) is [var single] ? single : IpProtocol.Tcp;
                    if (ports.Any(x => x.Name == portName && x.Protocol == proto))
                    {
                        throw p["name"].Error($"port name '{portName}' is declared twice");
                    }
                    ports.Add(new NamedPort(portName, number, proto));
                }
                try
                {
                    table.Add(name, ns, ips, labels, ports, ep["ready"].IsNull || ep["ready"].Boolean());
                }
                catch (ArgumentException e)
                {
                    throw ep.Error(e.Message.Split(" (Parameter")[0]);
                }
            }
        }
        return table;
    }
}
