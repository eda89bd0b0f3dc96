using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Gateway.Cli.Demo;
using Gateway.Datapath.Devices;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// ClusterIP services end to end (issue 15): two nodes running `gateway up` in overlay mode in
/// network namespaces, pods as namespaces behind them, real TCP and UDP through the VIP. A client
/// pod on node-a, three backends of the `web` service on node-b; and (<see cref="BuildLocal"/>) a
/// backend on the client's own node. Each backend answers every request line with its pod
/// name, so the client can tell which backend a VIP connection reached. Root only.
/// </summary>
[Collection("daemon")]
public class ServiceNetnsTests
{
    private const string Vip = "10.96.0.10";
    private const string StickyVip = "10.96.0.11";
    private const string EmptyVip = "10.96.0.12";

    private const string Services = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          selector: {app: web}
          ports:
          - {name: http, port: 80, targetPort: 8080, protocol: TCP}
          - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-sticky, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.11
          selector: {app: web}
          ports: [{port: 80, targetPort: 8080, protocol: TCP}]
          sessionAffinity: ClientIP
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: empty, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.12
          selector: {app: nothing}
          ports: [{port: 80, protocol: TCP}]
        """;

    private const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-egress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          egress:
          - toEndpoints: [{matchLabels: {app: web}}]
            toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: frontend}}, {matchLabels: {app: intruder}}]
            toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
          ingressDeny:
          - fromEndpoints: [{matchLabels: {app: intruder}}]
        """;

    private static int s_runs;

    private sealed class Setup : IDisposable
    {
        public required DemoCluster Cluster { get; init; }
        public required DemoCluster.Pod Client { get; init; }
        public required DemoCluster.Pod Intruder { get; init; }
        public required DemoCluster.Pod[] Backends { get; init; }
        public List<IDisposable> Servers { get; } = [];

        public void Dispose()
        {
            foreach (var s in Servers)
            {
                s.Dispose();
            }
            Cluster.Dispose();
        }
    }

    private static Setup Build() => Build("sv", Services, cluster =>
    [
        cluster.AddPod(cluster.B, "web-1", "10.11.2.11", ("app", "web")),
        cluster.AddPod(cluster.B, "web-2", "10.11.2.12", ("app", "web")),
        cluster.AddPod(cluster.B, "web-3", "10.11.2.13", ("app", "web")),
    ]);

    /// <summary>Two nodes, frontend and intruder on node-a, the backends <paramref name="addBackends"/>
    /// makes (each serving TCP 8080 and UDP 5353), <see cref="Policy"/> and <paramref name="services"/>; both nodes up.</summary>
    private static Setup Build(string prefix, string services, Func<DemoCluster, DemoCluster.Pod[]> addBackends)
    {
        var cluster = new DemoCluster($"{prefix}{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        try
        {
            cluster.BuildNodes();
            var client = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
            var intruder = cluster.AddPod(cluster.A, "intruder", "10.11.1.20", ("app", "intruder"));
            var backends = addBackends(cluster);
            cluster.WriteConfiguration(Policy, services);
            var setup = new Setup { Cluster = cluster, Client = client, Intruder = intruder, Backends = backends };
            foreach (var b in backends)
            {
                setup.Servers.Add(ServeTcp(b, 8080));
                setup.Servers.Add(ServeUdp(b, 5353));
            }
            cluster.StartNodes();
            foreach (var node in new[] { cluster.A, cluster.B })
            {
                CliHarness.WaitFor(() => node.Log.ToString().Contains(" up: listening", StringComparison.Ordinal), $"{node.Name} to come up");
            }
            return setup;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    private const string LocalVip = "10.96.0.13";

    /// <summary>`web` over one backend on node-a and two on node-b, and `web-local` over node-a's only.</summary>
    private const string LocalServices = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          selector: {app: web}
          ports:
          - {name: http, port: 80, targetPort: 8080, protocol: TCP}
          - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-local, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.13
          selector: {app: web, node: a}
          ports:
          - {name: http, port: 80, targetPort: 8080, protocol: TCP}
          - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
        """;

    /// <summary>Client and intruder on node-a with backend web-a; web-b1 and web-b2 on node-b.</summary>
    private static Setup BuildLocal() => Build("sl", LocalServices, cluster =>
    [
        cluster.AddPod(cluster.A, "web-a", "10.11.1.31", ("app", "web"), ("node", "a")),
        cluster.AddPod(cluster.B, "web-b1", "10.11.2.11", ("app", "web"), ("node", "b")),
        cluster.AddPod(cluster.B, "web-b2", "10.11.2.12", ("app", "web"), ("node", "b")),
    ]);

    /// <summary>The backend (pod name) Maglev picks for a client's TCP flow to VIP:80, computed here
    /// from the same files the nodes load: the oracle the nodes' choices must match.</summary>
    private static Func<int, string> MaglevOracle(Setup s, string vip)
    {
        var endpoints = Gateway.Policy.EndpointFile.Load(Path.Combine(s.Cluster.Directory, "endpoints.yaml"), new Gateway.Policy.IdentityAllocator());
        var table = Gateway.LoadBalancer.ServiceTable.Compile(Gateway.LoadBalancer.ServiceLoader.Parse(LocalServices, "services.yaml"), endpoints);
        var lb = new Gateway.LoadBalancer.ServiceLoadBalancer(table);
        var byIp = s.Cluster.AllPods.ToDictionary(p => p.Ip, p => p.Name);
        return port =>
        {
            var key = new Gateway.Datapath.FlowKey
            {
                Source = Gateway.Datapath.IpAddress.Parse(s.Client.Ip), SourcePort = (ushort)port,
                Destination = Gateway.Datapath.IpAddress.Parse(vip), DestinationPort = 80, Protocol = Gateway.Datapath.IpProtocol.Tcp,
            };
            Assert.Equal(Gateway.LoadBalancer.ServiceLookup.Selected, lb.Select(in key, 0, out var choice));
            return byIp[choice.BackendAddress.ToString()];
        };
    }

    /// <summary>Rewrites the cluster's endpoints file: the pods given, with readiness; the nodes reload it.</summary>
    private static void WriteEndpoints(DemoCluster cluster, IEnumerable<DemoCluster.Pod> pods, params string[] notReady)
    {
        var text = new StringBuilder("endpoints:\n");
        foreach (var pod in pods)
        {
            string labels = string.Join(", ", pod.Labels.Select(l => $"{l.Key}: {l.Value}"));
            string ready = notReady.Contains(pod.Name) ? ", ready: false" : "";
            text.Append($"  - {{name: {pod.Name}, namespace: {pod.Namespace}, ips: [{pod.Ip}], labels: {{{labels}}}{ready}}}\n");
        }
        File.WriteAllText(Path.Combine(cluster.Directory, "endpoints.yaml"), text.ToString());
    }

    /// <summary>A TCP server in the pod: every line received is answered with the pod's name (connections stay open).</summary>
    private static IDisposable ServeTcp(DemoCluster.Pod pod, int port)
    {
        var listener = NetworkNamespace.Run(pod.Ns, () =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse(pod.Ip), port));
            socket.Listen(512);
            return socket;
        });
        var thread = new Thread(() =>
        {
            while (true)
            {
                Socket client;
                try
                {
                    client = listener.Accept();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }
                new Thread(() =>
                {
                    using (client)
                    {
                        var buffer = new byte[256];
                        try
                        {
                            while (client.Receive(buffer) > 0)
                            {
                                client.Send(Encoding.ASCII.GetBytes(pod.Name + "\n"));
                            }
                        }
                        catch (SocketException)
                        {
                        }
                    }
                }) { IsBackground = true }.Start();
            }
        }) { IsBackground = true, Name = $"tcp:{pod.Name}" };
        thread.Start();
        return listener;
    }

    /// <summary>A UDP server in the pod answering every datagram with the pod's name.</summary>
    private static IDisposable ServeUdp(DemoCluster.Pod pod, int port)
    {
        var socket = NetworkNamespace.Run(pod.Ns, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Parse(pod.Ip), port));
            return s;
        });
        new Thread(() =>
        {
            var buffer = new byte[256];
            EndPoint from = new IPEndPoint(IPAddress.Any, 0);
            while (true)
            {
                try
                {
                    socket.ReceiveFrom(buffer, ref from);
                    socket.SendTo(Encoding.ASCII.GetBytes(pod.Name), from);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }
            }
        }) { IsBackground = true, Name = $"udp:{pod.Name}" }.Start();
        return socket;
    }

    /// <summary>A TCP connection from a pod to VIP:80 from a chosen source port (so the backends
    /// Maglev picks are the same on every run), kept open.</summary>
    private static Socket Connect(DemoCluster.Pod from, string vip, int sourcePort, int timeoutMs = 5000) => NetworkNamespace.Run(from.Ns, () =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(IPAddress.Parse(from.Ip), sourcePort));
            var connect = socket.BeginConnect(IPAddress.Parse(vip), 80, null, null);
            if (!connect.AsyncWaitHandle.WaitOne(timeoutMs))
            {
                throw new TimeoutException($"connect {from.Name}:{sourcePort} -> {vip}:80 timed out");
            }
            socket.EndConnect(connect);
            socket.ReceiveTimeout = timeoutMs;
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    });

    /// <summary>One request on an open connection: the backend's pod name.</summary>
    private static string Ask(Socket socket)
    {
        socket.Send("hi\n"u8.ToArray());
        var buffer = new byte[256];
        int n = socket.Receive(buffer);
        return Encoding.ASCII.GetString(buffer, 0, n).Trim();
    }

    /// <summary>A fresh connection, one request, closed: which backend answered.</summary>
    private static string Request(DemoCluster.Pod from, string vip, int sourcePort)
    {
        using var socket = Connect(from, vip, sourcePort);
        // The client only ever deals with the VIP: its socket is connected to VIP:80.
        Assert.Equal(new IPEndPoint(IPAddress.Parse(vip), 80), socket.RemoteEndPoint);
        string name = Ask(socket);
        socket.Shutdown(SocketShutdown.Both);
        return name;
    }

    private static string Diagnostics(Setup s) =>
        $"\n--- node-a\n{s.Cluster.A.Log}\n--- node-b\n{s.Cluster.B.Log}\n--- metrics a\n{Interesting(DemoCluster.Metrics(s.Cluster.A))}\n--- metrics b\n{Interesting(DemoCluster.Metrics(s.Cluster.B))}";

    /// <summary>The value of the sample of <paramref name="name"/> carrying all the labels given (in any
    /// order, whatever else it carries); -1 when there is none.</summary>
    private static long Metric(string metrics, string name, params (string Key, string Value)[] labels)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (!line.StartsWith(name + "{", StringComparison.Ordinal) && !line.StartsWith(name + " ", StringComparison.Ordinal))
            {
                continue;
            }
            if (labels.All(l => line.Contains($"{l.Key}=\"{l.Value}\"", StringComparison.Ordinal)) &&
                double.TryParse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value))
            {
                return (long)value;
            }
        }
        return -1;
    }

    private static string Interesting(string metrics) =>
        string.Join("\n", metrics.Split('\n').Where(l => !l.StartsWith('#') && !l.EndsWith(" 0")));

    [SkippableFact]
    public void ClusterIpSpreadsSticksDeniesAnswersEmptyVipsAndCarriesUdp()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var s = Build();
        var counts = s.Backends.ToDictionary(b => b.Name, _ => 0);
        // 300 requests, each a new connection from its own source port: Maglev spreads them.
        for (int i = 0; i < 300; i++)
        {
            string name;
            try
            {
                name = Request(s.Client, Vip, 20000 + i);
            }
            catch (Exception e) when (e is SocketException or TimeoutException)
            {
                throw new Xunit.Sdk.XunitException($"request {i}: {e.Message}{Diagnostics(s)}");
            }
            Assert.True(counts.ContainsKey(name), $"unexpected answer '{name}'");
            counts[name]++;
        }
        foreach (var (name, n) in counts)
        {
            Assert.True(n is >= 80 and <= 120, $"{name} served {n} of 300 (want 100 +-20%): {string.Join(", ", counts)}");
        }

        // ClientIP affinity: every connection of this client to the sticky service lands on one backend.
        var sticky = Enumerable.Range(0, 20).Select(i => Request(s.Client, StickyVip, 21000 + i)).Distinct().ToList();
        Assert.Single(sticky);

        // UDP through the VIP: the reply comes from VIP:53 (a connected socket accepts nothing else).
        string udpAnswer = NetworkNamespace.Run(s.Client.Ns, () =>
        {
            using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            udp.Bind(new IPEndPoint(IPAddress.Parse(s.Client.Ip), 0));
            udp.Connect(IPAddress.Parse(Vip), 53);
            udp.ReceiveTimeout = 3000;
            var buffer = new byte[256];
            for (int attempt = 0; attempt < 3; attempt++)
            {
                udp.Send("q"u8.ToArray());
                try
                {
                    int n = udp.Receive(buffer);
                    return Encoding.ASCII.GetString(buffer, 0, n);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
                {
                }
            }
            return "timed out";
        });
        Assert.True(s.Backends.Any(b => b.Name == udpAnswer), $"UDP via the VIP: {udpAnswer}{Diagnostics(s)}");

        // A deny policy on the backend label blocks intruder through the VIP (judged on node-b by
        // the backend's identity).
        var denied = Assert.ThrowsAny<Exception>(() => Connect(s.Intruder, Vip, 22000, timeoutMs: 1500));
        Assert.True(denied is TimeoutException, denied.Message);
        CliHarness.WaitFor(() => Metric(DemoCluster.Metrics(s.Cluster.B), "gateway_overlay_drop_count_total", ("reason", "POLICY_DENY"), ("direction", "INGRESS")) > 0,
            "POLICY_DENY on node-b");

        // A VIP without backends: NO_SERVICE drop, a flow event, and an ICMP unreachable the client's
        // kernel turns into "connection refused" at once.
        var refused = Assert.ThrowsAny<SocketException>(() => Connect(s.Client, EmptyVip, 22001));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);

        string metricsA = DemoCluster.Metrics(s.Cluster.A);
        Assert.True(Metric(metricsA, "gateway_overlay_drop_count_total", ("reason", "NO_SERVICE"), ("direction", "EGRESS")) > 0, metricsA);
        // 300 TCP connections, one UDP flow and intruder's connection (its SYN retries keep their
        // backend) chose a backend of default/web; 20 connections one of default/web-sticky.
        Assert.Equal(302, Metric(metricsA, "gateway_service_backend_selections_total", ("service", "default/web")));
        Assert.Equal(20, Metric(metricsA, "gateway_service_backend_selections_total", ("service", "default/web-sticky")));

        // Flow events name the service and the backend chosen for it; observe prints both.
        CliHarness.WaitFor(() => File.Exists(s.Cluster.A.FlowLogPath) && File.ReadAllText(s.Cluster.A.FlowLogPath).Contains("NO_SERVICE", StringComparison.Ordinal), "the NO_SERVICE flow event");
        var (code, json, _) = CliHarness.Run("observe", "--file", s.Cluster.A.FlowLogPath, "--json");
        Assert.Equal(0, code);
        var flows = json.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        var toWeb = flows.Where(f => f.TryGetProperty("destination_service", out var svc) && svc.GetProperty("name").GetString() == "web" &&
                                     svc.GetProperty("namespace").GetString() == "default").ToList();
        Assert.NotEmpty(toWeb);
        Assert.All(toWeb, f => Assert.Contains(f.GetProperty("IP").GetProperty("destination").GetString(), s.Backends.Select(b => b.Ip)));
        Assert.Contains(flows, f => f.TryGetProperty("drop_reason_desc", out var d) && d.GetString() == "NO_SERVICE" &&
                                    f.GetProperty("destination_service").GetProperty("name").GetString() == "empty");
        var (_, compact, _) = CliHarness.Run("observe", "--file", s.Cluster.A.FlowLogPath);
        Assert.True(Regex.IsMatch(compact, @"default/frontend:\d+ \(ID:\d+\) -> default/web-\d:(8080|5353) \(ID:\d+\) service:default/web(-sticky)? "), compact);
    }

    [SkippableFact]
    public void RemovedBackendsGetNoNewFlowsTheirClientsAreToldAndOtherFlowsSurvive()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var s = Build();
        // Long-lived connections, one per source port, until at least two backends hold one each.
        var open = new List<(Socket Socket, string Backend)>();
        try
        {
            for (int port = 23000; port < 23100 && open.Select(o => o.Backend).Distinct().Count() < 3; port++)
            {
                var socket = Connect(s.Client, Vip, port);
                open.Add((socket, Ask(socket)));
            }
            var gone = s.Backends.First(b => b.Name == open[0].Backend);
            var notReady = s.Backends.First(b => b.Name != gone.Name);
            var stays = s.Backends.Single(b => b != gone && b != notReady);
            var survivors = open.Where(o => o.Backend != gone.Name).ToList();

            // A UDP flow pinned to the backend that goes.
            var (udp, udpBackend) = NetworkNamespace.Run(s.Client.Ns, () =>
            {
                for (int port = 24000; port < 24100; port++)
                {
                    var u = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                    u.Bind(new IPEndPoint(IPAddress.Parse(s.Client.Ip), port));
                    u.Connect(IPAddress.Parse(Vip), 53);
                    u.ReceiveTimeout = 5000;
                    u.Send("q"u8.ToArray());
                    var buffer = new byte[64];
                    string name = Encoding.ASCII.GetString(buffer, 0, u.Receive(buffer));
                    if (name == gone.Name)
                    {
                        return (u, name);
                    }
                    u.Dispose();
                }
                throw new InvalidOperationException("no UDP flow reached " + gone.Name);
            });
            using (udp)
            {
                // The backend's pod goes away (endpoints file without it); both nodes reload.
                WriteEndpoints(s.Cluster, s.Cluster.AllPods.Where(p => p != gone));
                CliHarness.WaitFor(() => s.Cluster.A.Log.ToString().Contains("client(s) told", StringComparison.Ordinal), "node-a to end the flows to " + gone.Name);

                // The TCP clients of the gone backend get a RST from the VIP at once (they sent nothing).
                foreach (var (socket, backend) in open.Where(o => o.Backend == gone.Name))
                {
                    var reset = Assert.ThrowsAny<SocketException>(() => socket.Receive(new byte[64]));
                    Assert.True(reset.SocketErrorCode == SocketError.ConnectionReset, $"{reset.SocketErrorCode}{Diagnostics(s)}");
                }
                // The UDP client gets an ICMP unreachable from the VIP: its connected socket reports it.
                var unreachable = Assert.ThrowsAny<SocketException>(() => udp.Receive(new byte[64]));
                Assert.Equal(SocketError.ConnectionRefused, unreachable.SocketErrorCode);
            }
            Assert.True(Metric(DemoCluster.Metrics(s.Cluster.A), "gateway_service_teardowns_sent_total") > 0);

            // Connections to backends that stay survive the reload.
            foreach (var (socket, backend) in survivors)
            {
                Assert.Equal(backend, Ask(socket));
            }
            // New connections never go to the gone backend.
            var after = Enumerable.Range(0, 60).Select(i => Request(s.Client, Vip, 25000 + i)).ToList();
            Assert.DoesNotContain(gone.Name, after);
            Assert.Contains(notReady.Name, after);

            // A not-ready backend takes no new connections, but its established ones go on.
            int reloads = Regex.Matches(s.Cluster.A.Log.ToString(), "policy reloaded").Count;
            WriteEndpoints(s.Cluster, s.Cluster.AllPods.Where(p => p != gone), notReady.Name);
            CliHarness.WaitFor(() => Regex.Matches(s.Cluster.A.Log.ToString(), "policy reloaded").Count > reloads, "node-a's reload of the readiness change");
            var ready = Enumerable.Range(0, 30).Select(i => Request(s.Client, Vip, 26000 + i)).Distinct().ToList();
            Assert.Equal([stays.Name], ready);
            foreach (var (socket, backend) in survivors)
            {
                Assert.Equal(backend, Ask(socket));
            }
        }
        finally
        {
            foreach (var (socket, _) in open)
            {
                socket.Dispose();
            }
        }
    }

    [SkippableFact]
    public void BackendsOnTheClientsOwnNodeAnswerFromTheVipKeepTheClientIdentityHairpinAndEndOnRemoval()
    {
        Skip.If(DemoCluster.CannotRunReason() is not null, DemoCluster.CannotRunReason());
        using var s = BuildLocal();
        var local = s.Backends[0];
        // With services, node-a routes its pods' traffic to each other through the tunnel device.
        string rules = DemoCluster.Exec(s.Cluster.A.Ns, "ip -4 rule show");
        Assert.Contains("from 10.11.1.0/24 to 10.11.1.0/24 lookup 4242", rules);
        Assert.Contains($"10.11.1.0/24 dev {s.Cluster.A.Interface}", DemoCluster.Exec(s.Cluster.A.Ns, "ip -4 route show table 4242"));
        var oracle = MaglevOracle(s, Vip);
        var open = new List<(Socket Socket, string Backend)>();
        try
        {
            // Mixed service: every connection goes where Maglev says, the local backend included, and
            // the local one gets its share (a third of the flows, as each remote one).
            var counts = s.Backends.ToDictionary(b => b.Name, _ => 0);
            for (int i = 0; i < 90; i++)
            {
                string name;
                try
                {
                    name = Request(s.Client, Vip, 27000 + i);
                }
                catch (Exception e) when (e is SocketException or TimeoutException)
                {
                    throw new Xunit.Sdk.XunitException($"request {i}: {e.Message}{Diagnostics(s)}");
                }
                Assert.Equal(oracle(27000 + i), name);
                counts[name]++;
            }
            Assert.True(counts[local.Name] is >= 18 and <= 42, string.Join(", ", counts));

            // Local only: the client's socket is connected to the VIP (a reply from the backend's own
            // address would never reach it), TCP and UDP.
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(local.Name, Request(s.Client, LocalVip, 28000 + i));
            }
            string udpAnswer = NetworkNamespace.Run(s.Client.Ns, () =>
            {
                using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                udp.Bind(new IPEndPoint(IPAddress.Parse(s.Client.Ip), 0));
                udp.Connect(IPAddress.Parse(LocalVip), 53);
                udp.ReceiveTimeout = 3000;
                var buffer = new byte[256];
                for (int attempt = 0; attempt < 3; attempt++)
                {
                    udp.Send("q"u8.ToArray());
                    try
                    {
                        return Encoding.ASCII.GetString(buffer, 0, udp.Receive(buffer));
                    }
                    catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
                    {
                    }
                }
                return "timed out";
            });
            Assert.True(udpAnswer == local.Name, $"UDP via the VIP: {udpAnswer}{Diagnostics(s)}");

            // The local backend reaches itself through its own service (hairpin via 169.254.42.1).
            Assert.Equal(local.Name, Request(local, LocalVip, 29000));

            // Ingress policy judges the real client: intruder is denied by web's ingressDeny on node-a,
            // and the flow event names intruder's identity.
            var denied = Assert.ThrowsAny<Exception>(() => Connect(s.Intruder, LocalVip, 29500, timeoutMs: 1500));
            Assert.True(denied is TimeoutException, denied.Message);
            CliHarness.WaitFor(() => Metric(DemoCluster.Metrics(s.Cluster.A), "gateway_overlay_drop_count_total", ("reason", "POLICY_DENY"), ("direction", "INGRESS")) > 0,
                "POLICY_DENY on node-a");
            CliHarness.WaitFor(() => File.Exists(s.Cluster.A.FlowLogPath) && File.ReadAllLines(s.Cluster.A.FlowLogPath).Any(l =>
                l.Contains("POLICY_DENY", StringComparison.Ordinal) && l.Contains("\"source\":\"10.11.1.20\"", StringComparison.Ordinal) &&
                l.Contains("app=intruder", StringComparison.Ordinal) && l.Contains("web-local", StringComparison.Ordinal)), "intruder's POLICY_DENY flow event");

            // Long-lived connections: one to the local backend, one to a remote backend.
            for (int port = 30000; port < 30100 && (open.All(o => o.Backend != local.Name) || open.All(o => o.Backend == local.Name)); port++)
            {
                var socket = Connect(s.Client, Vip, port);
                open.Add((socket, Ask(socket)));
            }
            Assert.Contains(open, o => o.Backend == local.Name);
            Assert.Contains(open, o => o.Backend != local.Name);

            // A reload that keeps every backend (a remote one becomes not ready): all connections go on.
            int reloads = Regex.Matches(s.Cluster.A.Log.ToString(), "policy reloaded").Count;
            WriteEndpoints(s.Cluster, s.Cluster.AllPods, "web-b2");
            CliHarness.WaitFor(() => Regex.Matches(s.Cluster.A.Log.ToString(), "policy reloaded").Count > reloads, "node-a's reload");
            foreach (var (socket, backend) in open)
            {
                Assert.Equal(backend, Ask(socket));
            }

            // The local backend goes: its client is told at once (RST from the VIP), the others survive.
            WriteEndpoints(s.Cluster, s.Cluster.AllPods.Where(p => p != local), "web-b2");
            CliHarness.WaitFor(() => s.Cluster.A.Log.ToString().Contains("client(s) told", StringComparison.Ordinal), "node-a to end the flows to " + local.Name);
            foreach (var (socket, backend) in open)
            {
                if (backend == local.Name)
                {
                    var reset = Assert.ThrowsAny<SocketException>(() => socket.Receive(new byte[64]));
                    Assert.True(reset.SocketErrorCode == SocketError.ConnectionReset, $"{reset.SocketErrorCode}{Diagnostics(s)}");
                }
                else
                {
                    Assert.Equal(backend, Ask(socket));
                }
            }
            // web-local has no backend left: refused at once (NO_SERVICE).
            var refused = Assert.ThrowsAny<SocketException>(() => Connect(s.Client, LocalVip, 29600));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            foreach (var (socket, _) in open)
            {
                socket.Dispose();
            }
        }
    }
}
