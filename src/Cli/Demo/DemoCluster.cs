using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Gateway.Crypto;
using Gateway.Datapath.Devices;

namespace Gateway.Cli.Demo;

/// <summary>
/// A two-node overlay cluster on one machine: each node is a network namespace running
/// `gateway up` in overlay mode; nodes are joined by a veth pair (the underlay); each pod is a
/// namespace of its own, wired to its node by a veth pair, Cilium style (a /32 address and a
/// default route via a link-local gateway the node answers by proxy ARP). Everything it makes
/// carries a per-run id and is removed by <see cref="Dispose"/>. Traffic stays inside these
/// namespaces.
/// </summary>
internal sealed class DemoCluster : IDisposable
{
    internal sealed record Pod(string Name, string Namespace, string Ip, IReadOnlyDictionary<string, string> Labels, Node Node)
    {
        public string Ns => $"{Node.Cluster.Id}-{Name}";
    }

    internal sealed class Node(DemoCluster cluster, string name, string ns, string underlay, string tunnel, string podCidr)
    {
        public DemoCluster Cluster { get; } = cluster;
        public string Name { get; } = name;
        public string Ns { get; } = ns;
        public string Underlay { get; } = underlay;
        public string TunnelAddress { get; } = tunnel;
        public string PodCidr { get; } = podCidr;
        public string Interface => $"{Cluster.Id}{Name[^1]}gw";
        public WireGuardKey PrivateKey { get; } = WireGuardKey.GeneratePrivate();
        public WireGuardKey PublicKey => _public ??= PrivateKey.DerivePublic();
        private WireGuardKey? _public;
        public List<Pod> Pods { get; } = [];
        public Process? Process { get; set; }
        public StringBuilder Log { get; } = new();
        public string ConfigPath => Path.Combine(Cluster.Directory, $"{Name}.conf");
        public string FlowLogPath => Path.Combine(Cluster.Directory, $"{Name}.flows.jsonl");
        public string UapiSocket => $"/var/run/wireguard/{Interface}.sock";

        public void DisposeKeys()
        {
            PrivateKey.Dispose();
            _public?.Dispose();
        }
    }

    private readonly List<Process> _processes = [];
    private readonly List<string> _namespaces = [];
    private int _veth;

    public DemoCluster(string id)
    {
        Id = id;
        Directory = Path.Combine(Path.GetTempPath(), $"gateway-demo-{id}");
        System.IO.Directory.CreateDirectory(Directory);
        File.SetUnixFileMode(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        A = new Node(this, "node-a", $"{id}na", "192.168.250.1", "10.250.0.1", "10.11.1.0/24");
        B = new Node(this, "node-b", $"{id}nb", "192.168.250.2", "10.250.0.2", "10.11.2.0/24");
    }

    /// <summary>Short prefix of every name this cluster creates (namespaces, links).</summary>
    public string Id { get; }
    public string Directory { get; }
    public Node A { get; }
    public Node B { get; }
    public string UnderlayDeviceA => $"{Id}ua";
    public static string GatewayDll => Path.Combine(AppContext.BaseDirectory, "gateway.dll");

    public static string? CannotRunReason()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "the demo needs Linux";
        }
        if (Environment.UserName != "root")
        {
            return "the demo needs root (it creates network namespaces, veth pairs and TUN devices)";
        }
        if (!File.Exists("/usr/sbin/ip") && !File.Exists("/sbin/ip") && !File.Exists("/usr/bin/ip"))
        {
            return "the demo needs iproute2's ip command";
        }
        if (!File.Exists(GatewayDll))
        {
            return $"cannot find {GatewayDll}";
        }
        return null;
    }

    public static string Sh(string command, bool check = true)
    {
        string output = Run(command, out int exitCode, out string stderr);
        if (check && exitCode != 0)
        {
            throw new InvalidOperationException($"'{command}' failed: {stderr.Trim()}");
        }
        return output + stderr;
    }

    /// <summary>Runs a shell command; its standard output, exit code and standard error.</summary>
    public static string Run(string command, out int exitCode, out string stderr)
    {
        var psi = new ProcessStartInfo("/bin/bash", ["-c", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var errors = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"'{command}' timed out");
        }
        p.WaitForExit();
        exitCode = p.ExitCode;
        stderr = errors.Result;
        return stdout.Result;
    }

    public static string Exec(string ns, string command, bool check = true) => Sh($"ip netns exec {ns} {command}", check);

    internal void AddNamespace(string ns)
    {
        Sh($"ip netns add {ns}");
        _namespaces.Add(ns);
        Sh($"ip -n {ns} link set lo up");
    }

    /// <summary>Creates the node namespaces and the underlay between them.</summary>
    public void BuildNodes()
    {
        foreach (var node in new[] { A, B })
        {
            AddNamespace(node.Ns);
            Exec(node.Ns, "sysctl -qw net.ipv4.ip_forward=1");
        }
        Sh($"ip link add {Id}ua netns {A.Ns} type veth peer name {Id}ub netns {B.Ns}");
        Sh($"ip -n {A.Ns} addr add {A.Underlay}/24 dev {Id}ua && ip -n {A.Ns} link set {Id}ua up");
        Sh($"ip -n {B.Ns} addr add {B.Underlay}/24 dev {Id}ub && ip -n {B.Ns} link set {Id}ub up");
    }

    /// <summary>Creates a pod namespace wired to its node.</summary>
    public Pod AddPod(Node node, string name, string ip, params (string Key, string Value)[] labels)
    {
        var pod = new Pod(name, "default", ip, labels.ToDictionary(l => l.Key, l => l.Value), node);
        AddNamespace(pod.Ns);
        int n = Interlocked.Increment(ref _veth);
        string hostSide = $"{Id}h{n}", podSide = $"{Id}p{n}";
        Sh($"ip link add {hostSide} netns {node.Ns} type veth peer name {podSide} netns {pod.Ns}");
        Sh($"ip -n {pod.Ns} link set {podSide} name eth0");
        Sh($"ip -n {pod.Ns} addr add {ip}/32 dev eth0 && ip -n {pod.Ns} link set eth0 up");
        Sh($"ip -n {node.Ns} link set {hostSide} up && ip -n {node.Ns} route add {ip}/32 dev {hostSide}");
        // The pod's gateway is a link-local address that only exists as a permanent neighbour
        // entry pointing at the node side of the veth (what Cilium does).
        string hostMac = Exec(node.Ns, $"cat /sys/class/net/{hostSide}/address").Trim();
        Sh($"ip -n {pod.Ns} route add 169.254.1.1 dev eth0 && ip -n {pod.Ns} route add default via 169.254.1.1");
        Sh($"ip -n {pod.Ns} neigh replace 169.254.1.1 lladdr {hostMac} dev eth0 nud permanent");
        node.Pods.Add(pod);
        return pod;
    }

    public IEnumerable<Pod> AllPods => A.Pods.Concat(B.Pods);

    /// <summary>Writes the cluster-wide endpoints file, the policy, and each node's config.</summary>
    public void WriteConfiguration(string policyYaml, string? servicesYaml = null)
    {
        var endpoints = new StringBuilder("endpoints:\n");
        foreach (var pod in AllPods)
        {
            string labels = string.Join(", ", pod.Labels.Select(l => $"{l.Key}: {l.Value}"));
            endpoints.Append($"  - {{name: {pod.Name}, namespace: {pod.Namespace}, ips: [{pod.Ip}], labels: {{{labels}}}}}\n");
        }
        WriteSecret(Path.Combine(Directory, "endpoints.yaml"), endpoints.ToString());
        WriteSecret(Path.Combine(Directory, "policy.yaml"), policyYaml);
        string services = "";
        if (servicesYaml is not null)
        {
            WriteSecret(Path.Combine(Directory, "services.yaml"), servicesYaml);
            services = "Services = services.yaml\n";
        }
        foreach (var (self, peer) in new[] { (A, B), (B, A) })
        {
            WriteSecret(self.ConfigPath, $"""
                [Interface]
                PrivateKey = {self.PrivateKey.ToBase64()}
                ListenPort = 51871

                [Overlay]
                NodeName = {self.Name}
                TunnelAddress = {self.TunnelAddress}
                PodCIDR = {self.PodCidr}
                ClusterCIDR = 10.11.0.0/16
                Endpoints = endpoints.yaml
                Policy = policy.yaml
                {services}FlowLog = {self.FlowLogPath}

                [Peer]
                PublicKey = {peer.PublicKey.ToBase64()}
                Endpoint = {peer.Underlay}:51871
                TunnelAddress = {peer.TunnelAddress}
                PodCIDRs = {peer.PodCidr}

                """);
        }
    }

    internal static void WriteSecret(string path, string text)
    {
        using var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        stream.Write(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>Starts `gateway up` on both nodes and waits until their UAPI sockets exist.</summary>
    public void StartNodes(string metrics = "127.0.0.1:9962")
    {
        StartNode(A, metrics, wait: false);
        StartNode(B, metrics, wait: false);
        WaitForSocket(A, A.Process!);
        WaitForSocket(B, B.Process!);
    }

    /// <summary>Starts `gateway up` on one node.</summary>
    public void StartNode(Node node, string metrics = "127.0.0.1:9962", bool wait = true)
    {
        node.Process = StartProcess(node.Ns, $"dotnet {GatewayDll} up {node.ConfigPath} --interface {node.Interface} --metrics {metrics}", log: node.Log);
        if (wait)
        {
            WaitForSocket(node, node.Process);
        }
    }

    /// <summary>Starts a process inside a namespace; its output goes to <paramref name="log"/>.</summary>
    public Process StartProcess(string ns, string command, Dictionary<string, string>? environment = null, StringBuilder? log = null)
    {
        var psi = new ProcessStartInfo("ip", $"netns exec {ns} {command}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (k, v) in environment ?? [])
        {
            psi.Environment[k] = v;
        }
        log ??= new StringBuilder();
        var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes.Add(process);
        return process;
    }

    /// <summary>Waits for a node's UAPI socket (gateway or wireguard-go) to appear.</summary>
    public void WaitForSocket(Node node, Process process)
    {
        var watch = Stopwatch.StartNew();
        // Waiting for another process to come up, not for protocol time.
        while (!File.Exists(node.UapiSocket))
        {
            if (process.HasExited || watch.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"{node.Name} did not start: {node.Log}");
            }
            Thread.Sleep(20);
        }
    }

    /// <summary>Serves a minimal HTTP/1.0 page on port 80 inside the pod's namespace.</summary>
    public IDisposable ServeHttp(Pod pod)
    {
        var listener = NetworkNamespace.Run(pod.Ns, () =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(pod.Ip), 80));
            socket.Listen(16);
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
                using (client)
                {
                    try
                    {
                        client.ReceiveTimeout = 5000;
                        var buffer = new byte[4096];
                        client.Receive(buffer);
                        string body = $"hello from {pod.Name}\n";
                        client.Send(Encoding.ASCII.GetBytes($"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\n\r\n{body}"));
                    }
                    catch (SocketException)
                    {
                    }
                }
            }
        })
        { IsBackground = true, Name = $"http:{pod.Name}" };
        thread.Start();
        return listener;
    }

    /// <summary>Opens a TCP connection from one pod to another and sends an HTTP GET; returns the
    /// status line, or the error ("timed out" when the packets were dropped).</summary>
    public static string HttpGet(Pod from, Pod to, int port = 80, int timeoutMs = 3000) =>
        HttpRequest(from, to.Ip, port, timeoutMs).Split("\r\n")[0];

    /// <summary>An HTTP/1.0 GET from a pod to any address (a pod or a service VIP): the whole reply
    /// (read until the server closes), or the error ("timed out" when the packets were dropped).</summary>
    public static string HttpRequest(Pod from, string address, int port = 80, int timeoutMs = 3000) => NetworkNamespace.Run(from.Ns, () =>
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            var connect = socket.BeginConnect(System.Net.IPAddress.Parse(address), port, null, null);
            if (!connect.AsyncWaitHandle.WaitOne(timeoutMs))
            {
                return "timed out";
            }
            socket.EndConnect(connect);
            socket.ReceiveTimeout = timeoutMs;
            socket.Send(Encoding.ASCII.GetBytes($"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n"));
            var buffer = new byte[4096];
            int total = 0, n;
            while (total < buffer.Length && (n = socket.Receive(buffer, total, buffer.Length - total, SocketFlags.None)) > 0)
            {
                total += n;
            }
            return Encoding.ASCII.GetString(buffer, 0, total);
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.TimedOut ? "timed out" : e.Message;
        }
    });

    /// <summary>Pings between pods; returns the number of replies.</summary>
    public static int Ping(Pod from, Pod to, int count = 3)
    {
        string output = Exec(from.Ns, $"ping -c {count} -i 0.2 -W 2 {to.Ip}", check: false);
        int at = output.IndexOf(" received", StringComparison.Ordinal);
        if (at < 0)
        {
            return 0;
        }
        int start = output.LastIndexOf(' ', at - 1) + 1;
        return int.TryParse(output.AsSpan(start, at - start), out int received) ? received : 0;
    }

    /// <summary>The node's Prometheus metrics (served on loopback inside its namespace).</summary>
    public static string Metrics(Node node) =>
        Exec(node.Ns, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/9962; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'", check: false);

    public void StopNodes()
    {
        foreach (var node in new[] { A, B })
        {
            if (node.Process is { HasExited: false } p && node.Process.StartInfo.Arguments.Contains(" up ", StringComparison.Ordinal))
            {
                Sh($"kill -TERM {p.Id}", check: false);
                if (!p.WaitForExit(10_000))
                {
                    p.Kill(entireProcessTree: true);
                }
            }
        }
    }

    public void Dispose()
    {
        StopNodes();
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            Sh($"ip netns del {ns}", check: false);
        }
        A.DisposeKeys();
        B.DisposeKeys();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
