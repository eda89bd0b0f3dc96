using System.Net.Sockets;
using System.Text;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.Node.Tests.Flows;

/// <summary>
/// A policy engine with the encryption lab's pods (frontend may reach backend on TCP 80, db is
/// closed) and helpers that produce real flow events through <see cref="PolicyEngine.Process"/>.
/// Shared by the node tests and (linked into) the CLI tests.
/// </summary>
internal sealed class FlowTestWorld : IDisposable
{
    public const string Endpoints = """
        endpoints:
          - {name: frontend-1, namespace: default, ips: [10.1.0.10], labels: {app: frontend}}
          - {name: backend-1, namespace: default, ips: [10.2.0.20], labels: {app: backend}}
          - {name: db-1, namespace: default, ips: [10.2.0.30], labels: {app: db}}
        """;

    public const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: backend-allow-frontend, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: backend}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: frontend}}]
            toPorts: [{ports: [{port: "80", protocol: TCP}]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-closed, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
        """;

    private static int s_dirs;

    /// <param name="start">Wall time of the clock (default 2026-11-28 13:00:00.123 UTC).</param>
    /// <param name="tick">How far each flow moves the clock (default 1.5 ms).</param>
    public FlowTestWorld(int ringCapacity = 1024, DateTimeOffset? start = null, TimeSpan? tick = null)
    {
        Identities = new IdentityAllocator();
        Clock = new ManualClock(start ?? DateTimeOffset.Parse("2026-11-28T13:00:00.123Z", System.Globalization.CultureInfo.InvariantCulture),
            tick ?? TimeSpan.FromTicks(15_000));
        Engine = new PolicyEngine(Identities, new Conntrack(4096), new FlowEventRing(ringCapacity), Clock);
        Apply(Policy);
        // Unix socket paths are limited to 108 bytes: keep the folder short.
        Directory = Path.Combine("/tmp", $"gwf{Environment.ProcessId}-{Interlocked.Increment(ref s_dirs)}-{Guid.NewGuid().ToString("N")[..6]}");
    }

    public IdentityAllocator Identities { get; }
    public ManualClock Clock { get; }
    public PolicyEngine Engine { get; }
    public FlowEventRing Ring => Engine.Events;
    public string Directory { get; }

    public void Apply(string policy) =>
        Engine.Apply(new PolicySet(PolicyLoader.Parse(policy, "policy.yaml"), ["policy.yaml"]),
            EndpointFile.Parse(Endpoints, "endpoints.yaml", Identities));

    public uint Id(string pod) => Engine.Current.Endpoints.FindByName(pod)!.Identity.Id;

    /// <summary>A new TCP SYN from frontend to backend:80 (forwarded, ingress rule named).</summary>
    public FlowDecision Allowed(ushort sourcePort = 34567) => Engine.Process(Tcp("10.1.0.10", sourcePort, "10.2.0.20", 80), Clock.Tick());

    /// <summary>A new TCP SYN from frontend to db:5432 (dropped by default deny at db's ingress).</summary>
    public FlowDecision Denied(ushort sourcePort = 41000) => Engine.Process(Tcp("10.1.0.10", sourcePort, "10.2.0.30", 5432), Clock.Tick());

    public static FlowKey Tcp(string src, ushort sport, string dst, ushort dport) => new()
    {
        Source = IpAddress.Parse(src), Destination = IpAddress.Parse(dst), Protocol = IpProtocol.Tcp,
        SourcePort = sport, DestinationPort = dport, TcpFlags = TcpFlag.Syn,
    };

    public string NewPath(string name)
    {
        System.IO.Directory.CreateDirectory(Directory);
        return Path.Combine(Directory, name);
    }

    public void Dispose()
    {
        if (System.IO.Directory.Exists(Directory))
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    /// <summary>Waits for a background thread to reach a state (not protocol time: a bound on a hang).</summary>
    public static void WaitUntil(Func<bool> condition, string what)
    {
        Assert.True(SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(20)), "timed out waiting until " + what);
    }

    public static Socket Connect(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>Reads exactly <paramref name="count"/> lines (bounded by a timeout against hangs).</summary>
    public static List<string> ReadLines(Socket socket, int count)
    {
        socket.ReceiveTimeout = 20_000;
        var lines = new List<string>();
        var partial = new StringBuilder();
        var buffer = new byte[65536];
        while (lines.Count < count)
        {
            int n = socket.Receive(buffer);
            if (n == 0)
            {
                break;
            }
            partial.Append(Encoding.UTF8.GetString(buffer, 0, n));
            string text = partial.ToString();
            int nl;
            while ((nl = text.IndexOf('\n')) >= 0)
            {
                lines.Add(text[..nl]);
                text = text[(nl + 1)..];
            }
            partial.Clear().Append(text);
        }
        return lines;
    }

    public sealed class ManualClock(DateTimeOffset now, TimeSpan step) : TimeProvider
    {
        private DateTimeOffset _now = now;

        public override DateTimeOffset GetUtcNow() => _now;

        /// <summary>Moves time on by one step and returns monotonic nanoseconds for conntrack.</summary>
        public long Tick()
        {
            _now = _now.Add(step);
            return (_now - DateTimeOffset.UnixEpoch).Ticks * 100;
        }
    }
}
