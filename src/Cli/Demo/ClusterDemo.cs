using System.Diagnostics;
using Gateway.Datapath;

namespace Gateway.Cli.Demo;

/// <summary>
/// The two-node demo behind `gateway demo`: Cilium's transparent encryption with identity-aware
/// policy, end to end, on this machine. It builds two nodes and four pods in network namespaces,
/// runs `gateway up` in overlay mode on both with a policy in the style of Cilium's encryption
/// lab, drives real traffic (ping and HTTP), prints the verdicts and the flow log, audits a
/// capture of the underlay, and removes everything it made.
/// </summary>
internal static class ClusterDemo
{
    internal const string Policy = """
        # frontend may talk to backend (HTTP on TCP 80, and ping); nothing else leaves frontend.
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-egress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          egress:
          - toEndpoints: [{matchLabels: {app: backend}}]
            toPorts: [{ports: [{port: "80", protocol: TCP}]}]
          - toEndpoints: [{matchLabels: {app: backend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        ---
        # backend accepts only frontend.
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: backend-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: backend}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: frontend}}]
            toPorts: [{ports: [{port: "80", protocol: TCP}]}]
          - fromEndpoints: [{matchLabels: {app: frontend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        ---
        # db accepts only backend, on 5432.
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
            toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
        """;

    /// <summary>The ClusterIP of the demo's `backend` Service.</summary>
    internal const string BackendVip = "10.96.0.10";

    /// <summary>The `backend` Service the lab curls by ClusterIP: every pod labelled app=backend.</summary>
    internal const string BackendService = """
        apiVersion: v1
        kind: Service
        metadata: {name: backend, namespace: default}
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          selector: {app: backend}
          ports: [{name: http, port: 80, protocol: TCP}]
        """;

    /// <summary>Builds the cluster with its four pods and starts both nodes. With
    /// <paramref name="withService"/>, a second backend pod (backend-2) on node-b and the
    /// <see cref="BackendService"/> in both nodes' Services file.</summary>
    internal static DemoCluster Build(string id, out DemoCluster.Pod frontend, out DemoCluster.Pod intruder, out DemoCluster.Pod backend, out DemoCluster.Pod db,
        bool withService = false)
    {
        var cluster = new DemoCluster(id);
        try
        {
            cluster.BuildNodes();
            frontend = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
            intruder = cluster.AddPod(cluster.A, "intruder", "10.11.1.20", ("app", "intruder"));
            backend = cluster.AddPod(cluster.B, "backend", "10.11.2.10", ("app", "backend"));
            db = cluster.AddPod(cluster.B, "db", "10.11.2.20", ("app", "db"));
            if (withService)
            {
                cluster.AddPod(cluster.B, "backend-2", "10.11.2.11", ("app", "backend"));
            }
            cluster.WriteConfiguration(Policy, withService ? BackendService : null);
            cluster.StartNodes();
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    public static int Run(TextWriter output, TextWriter error)
    {
        if (DemoCluster.CannotRunReason() is { } reason)
        {
            error.WriteLine($"gateway demo: {reason}");
            return 1;
        }
        string id = $"gd{Environment.ProcessId % 100000}";
        output.WriteLine("gateway demo: two nodes, four pods, CiliumNetworkPolicy, VXLAN inside WireGuard");
        DemoCluster? cluster = null;
        Process? capture = null;
        bool ok = true;
        try
        {
            cluster = Build(id, out var frontend, out var intruder, out var backend, out var db, withService: true);
            var backend2 = cluster.B.Pods.Single(p => p.Name == "backend-2");
            foreach (var node in new[] { cluster.A, cluster.B })
            {
                output.WriteLine($"  {node.Name}: underlay {node.Underlay}, tunnel {node.TunnelAddress}, pods {node.PodCidr}: " +
                                 string.Join(", ", node.Pods.Select(p => $"{p.Name} {p.Ip} (app={p.Labels["app"]})")));
            }
            output.WriteLine("  policy: frontend -> backend TCP 80 and ping allowed; backend accepts only frontend; db accepts only backend");
            output.WriteLine($"  service: default/backend, ClusterIP {BackendVip}:80 -> backend, backend-2 (Maglev)");

            string pcap = Path.Combine(cluster.Directory, "underlay.pcap");
            capture = StartCapture(cluster.A.Ns, cluster.UnderlayDeviceA, pcap);

            using var web = cluster.ServeHttp(backend);
            using var dbServer = cluster.ServeHttp(db);
            using var web2 = cluster.ServeHttp(backend2);
            output.WriteLine("traffic:");
            ok &= Report(output, "ping frontend -> backend", $"{DemoCluster.Ping(frontend, backend)}/3 replies", s => s == "3/3 replies", "ALLOWED");
            ok &= Report(output, "HTTP frontend -> backend:80", DemoCluster.HttpGet(frontend, backend), s => s.Contains("200 OK"), "ALLOWED");
            ok &= Report(output, "HTTP frontend -> db:80", DemoCluster.HttpGet(frontend, db, 80, 1500), s => s == "timed out",
                "DENIED by frontend's egress policy on node-a (never encrypted or sent)");
            ok &= Report(output, "HTTP intruder -> backend:80", DemoCluster.HttpGet(intruder, backend, 80, 1500), s => s == "timed out",
                "DENIED by backend's ingress policy on node-b (intruder's identity read from the VNI)");
            // The lab's `curl http://backend`: the ClusterIP is translated on node-a before policy
            // and encryption, so only pod-to-pod traffic crosses the underlay.
            var served = Enumerable.Range(0, 20).Select(_ => ServedBy(frontend, BackendVip)).ToList();
            string spread = string.Join(", ", served.GroupBy(s => s).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));
            ok &= Report(output, $"HTTP frontend -> {BackendVip}:80 x20", spread,
                _ => served.Contains("backend") && served.Contains("backend-2") && served.All(s => s is "backend" or "backend-2"),
                "ALLOWED, spread over both backends; replies from the ClusterIP");
            ok &= Report(output, $"HTTP intruder -> {BackendVip}:80", ServedBy(intruder, BackendVip, 1500), s => s == "timed out",
                "DENIED by backend's ingress policy on node-b, through the ClusterIP");

            output.WriteLine("flows (gateway observe):");
            foreach (var node in new[] { cluster.A, cluster.B })
            {
                foreach (var line in FlowLines(node))
                {
                    output.WriteLine($"  {node.Name}  {line}");
                }
            }

            ok &= AuditCapture(output, capture, pcap, cluster.A.Name);
            capture = null;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            error.WriteLine($"gateway demo: {e.Message}");
            ok = false;
        }
        finally
        {
            if (capture is not null)
            {
                StopCapture(capture);
            }
            cluster?.Dispose();
            output.WriteLine("removed the demo's namespaces, links and files");
        }
        output.WriteLine(ok ? "demo completed: allowed flows passed (also through the ClusterIP), denied flows were dropped, the underlay carried only WireGuard"
                            : "DEMO FAILED: see above");
        return ok ? 0 : 1;
    }

    /// <summary>GET / from a pod to VIP:80: the pod that answered (the demo servers say their name),
    /// or the error ("timed out" when the packets were dropped).</summary>
    internal static string ServedBy(DemoCluster.Pod from, string vip, int timeoutMs = 3000)
    {
        string reply = DemoCluster.HttpRequest(from, vip, 80, timeoutMs);
        int at = reply.IndexOf("hello from ", StringComparison.Ordinal);
        return at < 0 ? reply.Split("\r\n")[0] : reply[(at + "hello from ".Length)..].Trim();
    }

    /// <summary>Stops the capture and prints what `gateway audit` says about it; true when it
    /// holds WireGuard and no plaintext cluster traffic.</summary>
    internal static bool AuditCapture(TextWriter output, Process? capture, string pcap, string nodeName)
    {
        StopCapture(capture);
        if (!File.Exists(pcap))
        {
            output.WriteLine("underlay capture skipped: tcpdump is not installed (scripts/setup.sh installs it)");
            return true;
        }
        var report = Gateway.Datapath.Audit.CaptureAuditor.AuditFile(pcap);
        output.WriteLine($"underlay capture on {nodeName} ({report.TotalPackets} packets, " +
                         $"{report.Counts[Gateway.Datapath.Audit.PacketClass.WireGuard]} WireGuard): gateway audit says {report.Verdict}");
        return !report.IsLeak && report.Counts[Gateway.Datapath.Audit.PacketClass.WireGuard] > 0;
    }

    /// <summary>One line of the demo's traffic table; false when the observation is not the expected one.</summary>
    internal static bool Report(TextWriter output, string flow, string observed, Func<string, bool> expected, string verdict)
    {
        bool ok = expected(observed);
        output.WriteLine($"  {flow,-30} {observed,-18} {(ok ? verdict : "UNEXPECTED")}");
        return ok;
    }

    /// <summary>Starts tcpdump on a device inside a namespace (UDP only unless <paramref name="filter"/>
    /// says otherwise, e.g. "udp or esp" for IPsec mode), once it is armed; null without tcpdump.</summary>
    internal static Process? StartCapture(string ns, string device, string pcap, string filter = "udp")
    {
        if (!File.Exists("/usr/bin/tcpdump") && !File.Exists("/usr/sbin/tcpdump"))
        {
            return null;
        }
        var psi = new ProcessStartInfo("ip", $"netns exec {ns} tcpdump --immediate-mode -i {device} -U -s 0 -w {pcap} {filter}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var process = Process.Start(psi)!;
        // tcpdump says "listening on ..." once the capture is armed.
        var watch = Stopwatch.StartNew();
        string? line;
        while ((line = process.StandardError.ReadLine()) is not null && !line.Contains("listening on", StringComparison.Ordinal) &&
               watch.Elapsed < TimeSpan.FromSeconds(10))
        {
        }
        _ = process.StandardError.ReadToEndAsync();
        return process;
    }

    internal static void StopCapture(Process? capture)
    {
        if (capture is null)
        {
            return;
        }
        if (!capture.HasExited)
        {
            DemoCluster.Sh($"kill -INT {capture.Id}", check: false);
            if (!capture.WaitForExit(10_000))
            {
                capture.Kill();
            }
        }
        capture.Dispose();
    }

    /// <summary>The node's flow log rendered the way `gateway observe` prints it.</summary>
    private static IEnumerable<string> FlowLines(DemoCluster.Node node)
    {
        if (!File.Exists(node.FlowLogPath))
        {
            yield return "(no flow log)";
            yield break;
        }
        string text = DemoCluster.Sh($"dotnet {DemoCluster.GatewayDll} observe --file {node.FlowLogPath} --last 50", check: false);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            yield return line;
        }
    }
}
