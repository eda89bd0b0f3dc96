// Two complete Gateway nodes in one process, joined by the in-memory devices instead of TUN
// devices and UDP sockets (no root needed). Each runs the overlay: a packet from a pod on node A
// is checked against A's egress policy, wrapped in VXLAN carrying the pod's security identity,
// sealed by WireGuard, carried over the in-memory "underlay", opened by node B, checked against
// B's ingress policy and delivered to B's TUN device. The flow events of both nodes are printed
// as Hubble-style JSON lines, then a few of the nodes' metrics.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Flows;

string folder = Directory.CreateTempSubdirectory("gateway-two-nodes-").FullName;
File.WriteAllText(Path.Combine(folder, "endpoints.yaml"), """
    endpoints:
      - {name: frontend, namespace: default, ips: [10.11.1.10], labels: {app: frontend}}
      - {name: backend, namespace: default, ips: [10.11.2.10], labels: {app: backend}}
      - {name: db, namespace: default, ips: [10.11.2.20], labels: {app: db}}
    """);
File.WriteAllText(Path.Combine(folder, "policy.yaml"), """
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: frontend-egress, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: frontend}}
      egress:
      - toEndpoints: [{matchLabels: {app: backend}}]
        toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    """);

var network = new MemoryNetwork();
using var keyA = WireGuardKey.GeneratePrivate();
using var keyB = WireGuardKey.GeneratePrivate();
var underlayA = new IpEndpoint(IpAddress.Parse("192.0.2.1"), 51871);
var underlayB = new IpEndpoint(IpAddress.Parse("192.0.2.2"), 51871);
var tunA = new MemoryTunDevice("gwa");
var tunB = new MemoryTunDevice("gwb");
using var configA = Config("a", keyA, keyB, underlayB, "10.0.0.1", "10.0.0.2", "10.11.1.0/24", "10.11.2.0/24", "198.51.100.1", "198.51.100.2");
using var configB = Config("b", keyB, keyA, underlayA, "10.0.0.2", "10.0.0.1", "10.11.2.0/24", "10.11.1.0/24", "198.51.100.2", "198.51.100.1");
await using var nodeA = Start(configA, tunA, underlayA);
await using var nodeB = Start(configB, tunB, underlayB);

// frontend (node A) -> backend (node B), TCP 80: the policy allows it.
tunA.InjectPacket(TcpSyn("10.11.1.10", "10.11.2.10", 40000, 80));
Console.WriteLine(tunB.TryTake(out var delivered, TimeSpan.FromSeconds(10))
    ? $"frontend -> backend:80 delivered to {tunB.Name} ({delivered.Length} bytes)"
    : "frontend -> backend:80 NOT delivered");
// frontend -> db, TCP 5432: frontend's egress policy allows only backend:80, so node A drops it.
tunA.InjectPacket(TcpSyn("10.11.1.10", "10.11.2.20", 40001, 5432));
Console.WriteLine(tunB.TryTake(out _, TimeSpan.FromSeconds(1))
    ? "frontend -> db:5432 delivered (unexpected)"
    : "frontend -> db:5432 dropped");

foreach (var (node, nodeName) in new[] { (nodeA, "node-a"), (nodeB, "node-b") })
{
    // With FlowLog = off nothing else reads the node's flow event ring: this program does.
    var policy = node.Overlay!.Policy;
    while (policy.Events.TryRead(out var flow))
    {
        var line = new MemoryStream();
        using (var json = new Utf8JsonWriter(line))
        {
            FlowLogJson.Write(json, flow, policy.Current, policy.Current, nodeName);
        }
        Console.WriteLine(Encoding.UTF8.GetString(line.ToArray()));
    }
}

// The nodes' counters are System.Diagnostics.Metrics instruments (meters Gateway.*); read them here
// without any exporter.
foreach (var reading in nodeA.Meters.Read().Concat(nodeB.Meters.Read()))
{
    if (reading.Name is "gateway_policy_verdict_total" or "gateway_forward_count_total" && reading.Value > 0)
    {
        Console.WriteLine(reading);
    }
}
Directory.Delete(folder, recursive: true);

WgQuickConfig Config(string name, WireGuardKey self, WireGuardKey peer, IpEndpoint peerUnderlay,
    string address, string peerAddress, string pods, string peerPods, string tunnel, string peerTunnel)
{
    string path = Path.Combine(folder, $"{name}.conf");
    string text = $"""
        [Interface]
        PrivateKey = {self.ToBase64()}
        ListenPort = 51871
        Address = {address}/24

        [Overlay]
        NodeName = node-{name}
        TunnelAddress = {tunnel}
        PodCIDR = {pods}
        ClusterCIDR = 10.11.0.0/16
        Endpoints = endpoints.yaml
        Policy = policy.yaml
        FlowLog = off

        [Peer]
        PublicKey = {peer.DerivePublic().ToBase64()}
        Endpoint = {peerUnderlay}
        AllowedIPs = {peerAddress}/32
        TunnelAddress = {peerTunnel}
        PodCIDRs = {peerPods}
        """;
    File.WriteAllText(path, text);
    return WgQuickConfig.Parse(text, path);
}

WireGuardNode Start(WgQuickConfig config, MemoryTunDevice tun, IpEndpoint underlay) =>
    WireGuardNode.Start(new WireGuardNodeOptions
    {
        InterfaceName = tun.Name,
        Config = config,
        Tun = tun,                      // the node owns the devices from here on
        Bind = network.Bind(underlay),
        Log = new NodeLog(TextWriter.Null),
    });

// An IPv4 TCP SYN with correct checksums.
static byte[] TcpSyn(string source, string destination, ushort sourcePort, ushort destinationPort)
{
    var packet = new byte[40];
    packet[0] = 0x45;
    BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
    packet[8] = 64;
    packet[9] = 6;
    IpAddress.Parse(source).WriteBytes(packet.AsSpan(12));
    IpAddress.Parse(destination).WriteBytes(packet.AsSpan(16));
    BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
    BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), sourcePort);
    BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), destinationPort);
    BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(24), 1);
    packet[32] = 0x50;
    packet[33] = 0x02; // SYN
    BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(34), 65535);
    TransportChecksum.TryFill(packet);
    return packet;
}
