using System.Diagnostics;
using System.Text;

namespace Gateway.Cli.Demo;

/// <summary>
/// A cluster-mode lab on one machine, shared by `gateway demo --cluster` and the cluster tests:
/// an "underlay" network namespace holding a bridge and a real etcd (Debian's etcd-server, a
/// temporary data directory, listening on the bridge's address only), and any number of node
/// namespaces plugged into the bridge, each running `gateway up` configured with nothing but its
/// own pods and the etcd address. Pods, processes, namespaces and files are made and removed by
/// the <see cref="DemoCluster"/> it builds on; every name carries the per-run id.
/// </summary>
internal sealed class KvCluster : IDisposable
{
    public const string EtcdAddress = "192.168.242.254";
    public const string ClusterCidr = "10.42.0.0/16";
    private readonly DemoCluster _lab;
    private Process? _etcd;

    public KvCluster(string id, int leaseTtlSeconds = 15, bool tls = false)
    {
        _lab = new DemoCluster(id);
        LeaseTtl = leaseTtlSeconds;
        Tls = tls;
        try
        {
            UnderlayNs = $"{id}u";
            _lab.AddNamespace(UnderlayNs);
            DemoCluster.Exec(UnderlayNs, $"ip link add {Bridge} type bridge");
            DemoCluster.Exec(UnderlayNs, $"ip addr add {EtcdAddress}/24 dev {Bridge}");
            DemoCluster.Exec(UnderlayNs, $"ip link set {Bridge} up");
            if (tls)
            {
                MakeCertificates();
            }
        }
        catch
        {
            _lab.Dispose();
            throw;
        }
    }

    public DemoCluster Lab => _lab;
    public string Id => _lab.Id;
    public string Directory => _lab.Directory;
    public string UnderlayNs { get; }
    public string Bridge => $"{Id}br";
    public int LeaseTtl { get; }
    public bool Tls { get; }
    public List<DemoCluster.Node> Nodes { get; } = [];
    public string EtcdUrl => $"{(Tls ? "https" : "http")}://{EtcdAddress}:2379";
    public string EtcdLog => _etcdLog.ToString();
    private readonly StringBuilder _etcdLog = new();

    public static string? CannotRunReason()
    {
        if (DemoCluster.CannotRunReason() is { } reason)
        {
            return reason;
        }
        if (!File.Exists("/usr/bin/etcd") || !File.Exists("/usr/bin/etcdctl"))
        {
            return "needs etcd and etcdctl (Debian etcd-server and etcd-client; scripts/setup.sh installs them)";
        }
        return null;
    }

    // ------------------------------------------------------------------ etcd

    /// <summary>Starts etcd in the underlay namespace (again, after <see cref="StopEtcd"/>, on the same
    /// data) and waits until it answers.</summary>
    public void StartEtcd()
    {
        string data = Path.Combine(Directory, "etcd");
        string tls = Tls
            ? $" --cert-file {Pem("server")} --key-file {Pem("server-key")} --client-cert-auth --trusted-ca-file {Pem("ca")}"
            : "";
        _etcd = _lab.StartProcess(UnderlayNs,
            $"etcd --name gw --data-dir {data} --listen-client-urls {EtcdUrl} --advertise-client-urls {EtcdUrl} " +
            "--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 " +
            "--initial-cluster gw=http://127.0.0.1:2380 --log-level error" + tls, log: _etcdLog);
        var watch = Stopwatch.StartNew();
        // Waiting for another process to come up, not for protocol time.
        while (!Etcdctl("endpoint health", check: false).Contains("is healthy", StringComparison.Ordinal))
        {
            if (_etcd.HasExited || watch.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"etcd did not start: {_etcdLog}");
            }
            Thread.Sleep(100);
        }
    }

    public void StopEtcd()
    {
        if (_etcd is { HasExited: false } p)
        {
            DemoCluster.Sh($"kill -TERM {p.Id}", check: false);
            if (!p.WaitForExit(10_000))
            {
                p.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>Runs etcdctl (v3 API) against the lab's etcd, with the client certificate under TLS.</summary>
    public string Etcdctl(string arguments, bool check = true)
    {
        string tls = Tls ? $" --cacert {Pem("ca")} --cert {Pem("client")} --key {Pem("client-key")}" : "";
        return DemoCluster.Exec(UnderlayNs, $"env ETCDCTL_API=3 etcdctl --endpoints {EtcdUrl} --dial-timeout 2s{tls} {arguments}", check);
    }

    public string Pem(string name) => Path.Combine(Directory, $"{name}.pem");

    /// <summary>A CA, etcd's server certificate (for the bridge address) and a client certificate, made with openssl.</summary>
    private void MakeCertificates()
    {
        string d = Directory;
        DemoCluster.Sh($"cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=gateway-test-ca -keyout ca-key.pem -out ca.pem 2>&1");
        foreach (var (name, ext) in new[] { ("server", $"subjectAltName=IP:{EtcdAddress}\nextendedKeyUsage=serverAuth"), ("client", "extendedKeyUsage=clientAuth") })
        {
            File.WriteAllText(Path.Combine(d, $"{name}.ext"), ext + "\n");
            DemoCluster.Sh($"cd {d} && openssl req -newkey rsa:2048 -nodes -subj /CN=gateway-{name} -keyout {name}-key.pem -out {name}.csr 2>&1 && " +
                           $"openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile {name}.ext -out {name}.pem 2>&1");
        }
        DemoCluster.Sh($"chmod 600 {d}/*-key.pem");
    }

    // ------------------------------------------------------------------ nodes and pods

    /// <summary>Creates node number <paramref name="n"/> (1-99): its namespace plugged into the bridge at
    /// 192.168.242.n with a default route there, tunnel address 10.242.0.n, pods in 10.42.n.0/24.</summary>
    public DemoCluster.Node AddNode(int n)
    {
        var node = new DemoCluster.Node(_lab, $"node-{n}", $"{Id}n{n}", $"192.168.242.{n}", $"10.242.0.{n}", $"10.42.{n}.0/24");
        _lab.AddNamespace(node.Ns);
        DemoCluster.Exec(node.Ns, "sysctl -qw net.ipv4.ip_forward=1");
        string outside = $"{Id}b{n}", inside = $"{Id}e{n}";
        DemoCluster.Sh($"ip link add {outside} netns {UnderlayNs} type veth peer name {inside} netns {node.Ns}");
        DemoCluster.Exec(UnderlayNs, $"ip link set {outside} master {Bridge} up");
        DemoCluster.Exec(node.Ns, $"ip addr add {node.Underlay}/24 dev {inside}");
        DemoCluster.Exec(node.Ns, $"ip link set {inside} up");
        // The default route makes NodeAddress discoverable and is what would carry plaintext if
        // strict mode did not block the cluster's prefix.
        DemoCluster.Exec(node.Ns, $"ip route add default via {EtcdAddress}");
        Nodes.Add(node);
        return node;
    }

    public string UnderlayDevice(DemoCluster.Node node) => $"{Id}e{node.Name[(node.Name.LastIndexOf('-') + 1)..]}";

    public DemoCluster.Pod AddPod(DemoCluster.Node node, string name, int host, params (string Key, string Value)[] labels)
    {
        string ip = node.PodCidr.Replace(".0/24", $".{host}", StringComparison.Ordinal);
        return _lab.AddPod(node, name, ip, labels);
    }

    /// <summary>Writes the node's config: its key, its pods, the etcd address — no [Peer] at all.</summary>
    public void WriteConfig(DemoCluster.Node node, string extraOverlay = "", bool withCertificate = true, string? privateKey = null)
    {
        var endpoints = new StringBuilder("endpoints:\n");
        foreach (var pod in node.Pods)
        {
            string labels = string.Join(", ", pod.Labels.Select(l => $"{l.Key}: {l.Value}"));
            endpoints.Append($"  - {{name: {pod.Name}, namespace: {pod.Namespace}, ips: [{pod.Ip}], labels: {{{labels}}}}}\n");
        }
        string endpointsPath = Path.Combine(Directory, $"{node.Name}.endpoints.yaml");
        DemoCluster.WriteSecret(endpointsPath, endpoints.ToString());
        string tls = !Tls ? "" : $"KVStoreCA = {Pem("ca")}\n" + (withCertificate ? $"KVStoreCert = {Pem("client")}\nKVStoreKey = {Pem("client-key")}\n" : "");
        DemoCluster.WriteSecret(node.ConfigPath, $"""
            [Interface]
            PrivateKey = {privateKey ?? node.PrivateKey.ToBase64()}
            ListenPort = 51871

            [Overlay]
            NodeName = {node.Name}
            TunnelAddress = {node.TunnelAddress}
            PodCIDR = {node.PodCidr}
            ClusterCIDR = {ClusterCidr}
            Endpoints = {endpointsPath}
            FlowLog = {node.FlowLogPath}
            KVStore = {EtcdUrl}
            KVStoreLeaseTTL = {LeaseTtl}
            {tls}{extraOverlay}

            """);
    }

    /// <summary>Starts `gateway up` on the nodes (all at once) and waits until each has registered in etcd.</summary>
    public void StartNodes(params DemoCluster.Node[] nodes)
    {
        foreach (var node in nodes)
        {
            _lab.StartNode(node, wait: false);
        }
        foreach (var node in nodes)
        {
            WaitForLog(node, "cluster: registered node");
        }
    }

    /// <summary>Waits until the node's log shows <paramref name="text"/> (another process acting; bounded).</summary>
    public static void WaitForLog(DemoCluster.Node node, string text, int timeoutMs = 30_000)
    {
        var watch = Stopwatch.StartNew();
        while (!Contains(node.Log, text))
        {
            if (node.Process is { HasExited: true } || watch.ElapsedMilliseconds > timeoutMs)
            {
                throw new InvalidOperationException($"{node.Name}: '{text}' did not appear in its log:\n{node.Log}");
            }
            Thread.Sleep(50);
        }
    }

    private static bool Contains(StringBuilder log, string text)
    {
        lock (log)
        {
            return log.ToString().Contains(text, StringComparison.Ordinal);
        }
    }

    /// <summary>Stops a node the clean way (SIGTERM: it deregisters) or kills it (SIGKILL: its lease ends).</summary>
    public static void StopNode(DemoCluster.Node node, bool kill)
    {
        if (node.Process is { HasExited: false } p)
        {
            // `ip netns exec` execs, so the process is gateway itself.
            DemoCluster.Sh($"kill -{(kill ? "KILL" : "TERM")} {p.Id}", check: false);
            p.WaitForExit(10_000);
        }
    }

    /// <summary>The public keys of the node's WireGuard peers, read with `wg show` through its UAPI socket.</summary>
    public static HashSet<string> PeerKeys(DemoCluster.Node node)
    {
        string text = DemoCluster.Exec(node.Ns, $"wg show {node.Interface} peers", check: false);
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>True when the node's kernel refuses to route to <paramref name="ip"/> (strict mode's
    /// prohibit route is the best match: `ip route get` answers "Permission denied").</summary>
    public static bool IsProhibited(DemoCluster.Node node, string ip) =>
        DemoCluster.Exec(node.Ns, $"ip route get {ip}", check: false).Contains("Permission denied", StringComparison.Ordinal);

    /// <summary>Runs `gateway ARGS` (e.g. policy apply --kvstore) inside the underlay namespace.</summary>
    public string Gateway(string arguments, out int exitCode)
    {
        string tls = Tls && arguments.Contains("--kvstore", StringComparison.Ordinal)
            ? $" --kvstore-ca {Pem("ca")} --kvstore-cert {Pem("client")} --kvstore-key {Pem("client-key")}"
            : "";
        string output = DemoCluster.Run($"ip netns exec {UnderlayNs} dotnet {DemoCluster.GatewayDll} {arguments}{tls}", out exitCode, out string stderr);
        return output + stderr;
    }

    public void Dispose()
    {
        foreach (var node in Nodes)
        {
            StopNode(node, kill: false);
            node.DisposeKeys();
        }
        // For debugging a failed run: GATEWAY_LAB_LOGS=DIR keeps every node's log.
        if (Environment.GetEnvironmentVariable("GATEWAY_LAB_LOGS") is { Length: > 0 } keep)
        {
            System.IO.Directory.CreateDirectory(keep);
            foreach (var node in Nodes)
            {
                lock (node.Log)
                {
                    File.WriteAllText(Path.Combine(keep, $"{Id}-{node.Name}.log"), node.Log.ToString());
                }
            }
            File.WriteAllText(Path.Combine(keep, $"{Id}-etcd.log"), EtcdLog);
        }
        StopEtcd();
        _lab.Dispose();
    }
}
