using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Gateway.Cli.Demo;
using Gateway.Datapath;
using Gateway.Policy;
using Gateway.Tunnel.Esp;

namespace Gateway.Cli.Tests.Overlay;

/// <summary>
/// `gateway up` in IPsec mode ([Overlay] Encryption = ipsec) against a second node made of scapy
/// (scapy.layers.ipsec, an independent ESP implementation) in network namespaces: scapy derives
/// Cilium's node-pair keys itself from the global key and both boot ids, sends VXLAN-in-ESP from
/// its pod to a pod behind the Gateway node, and opens the ESP the Gateway node answers with. The
/// capture of the underlay is then decrypted by tshark (Wireshark's ESP dissector, a third
/// implementation) and audited by `gateway audit`.
/// </summary>
[Collection("daemon")]
public class IpsecDaemonInteropTests
{
    private const string Python = "/usr/bin/python3";
    internal const string Tshark = "/usr/bin/tshark";
    private const string ScapyBootId = "5ca9e000-0000-4000-8000-00000000b00b";
    private const string Policy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-ingress, namespace: default}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: backend}}]
            icmps: [{fields: [{type: 8, family: IPv4}]}]
        """;

    private static int s_runs;

    private static string? Missing()
    {
        if (DemoCluster.CannotRunReason() is { } reason) return reason;
        if (!File.Exists(Python)) return $"{Python} not found (scripts/setup.sh installs python3-scapy)";
        var check = Process.Start(new ProcessStartInfo(Python, "-c \"import scapy.layers.ipsec, scapy.layers.vxlan, cryptography\"") { RedirectStandardError = true })!;
        check.WaitForExit();
        return check.ExitCode == 0 ? null : "python3-scapy/python3-cryptography missing (scripts/setup.sh installs them)";
    }

    [SkippableFact]
    public void ScapyEspPeerExchangesPacketsWithGatewayUpBothWays()
    {
        Skip.If(Missing() is not null, Missing());
        using var cluster = new DemoCluster($"ip{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_runs)}");
        cluster.BuildNodes();
        var frontend = cluster.AddPod(cluster.A, "frontend", "10.11.1.10", ("app", "frontend"));
        // Node B is scapy: its pod exists only in the shared endpoints file and in scapy's packets.
        var backend = new DemoCluster.Pod("backend", "default", "10.11.2.10", new Dictionary<string, string> { ["app"] = "backend" }, cluster.B);
        cluster.B.Pods.Add(backend);
        cluster.WriteConfiguration(Policy);
        var table = EndpointFile.Load(Path.Combine(cluster.Directory, "endpoints.yaml"), new IdentityAllocator());
        uint backendId = table.FindByName("backend")!.Identity.Id;
        uint frontendId = table.FindByName("frontend")!.Identity.Id;

        var globalKey = RandomNumberGenerator.GetBytes(20);
        DemoCluster.WriteSecret(Path.Combine(cluster.Directory, "ipsec-keys"), $"3+ rfc4106(gcm(aes)) {Convert.ToHexStringLower(globalKey)} 128\n");
        string config = File.ReadAllText(cluster.A.ConfigPath)
            .Replace("Policy = policy.yaml\n", "Policy = policy.yaml\nEncryption = ipsec\nIPsecKeyFile = ipsec-keys\n", StringComparison.Ordinal)
            + $"IPsecBootId = {ScapyBootId}\n";
        DemoCluster.WriteSecret(cluster.A.ConfigPath, config);

        cluster.StartNode(cluster.A);
        CliHarness.WaitFor(() => cluster.A.Log.ToString().Contains(" up: listening", StringComparison.Ordinal), "node A's up line", TimeSpan.FromSeconds(60));
        string log = cluster.A.Log.ToString();
        int at = log.IndexOf("boot id ", StringComparison.Ordinal);
        Assert.True(at >= 0, log);
        string gatewayBoot = log.Substring(at + "boot id ".Length, 36);
        Assert.True(Guid.TryParse(gatewayBoot, out _), log);

        string pcap = Path.Combine(cluster.Directory, "underlay.pcap");
        string script = Path.Combine(AppContext.BaseDirectory, "Overlay", "scapy_esp_node.py");
        const int count = 3;
        string output = DemoCluster.Exec(cluster.B.Ns,
            $"{Python} {script} {Convert.ToHexStringLower(globalKey)} {cluster.B.Underlay} {cluster.A.Underlay} {ScapyBootId} {gatewayBoot} " +
            $"{cluster.Id}ub {backendId} {cluster.B.TunnelAddress} {cluster.A.TunnelAddress} {backend.Ip} {frontend.Ip} {count} {pcap}", check: false);
        string context = $"{output}\n{cluster.A.Log}\n{DemoCluster.Metrics(cluster.A)}";

        // scapy -> Gateway: opened, VNI bound to node B, ingress policy, delivered to the pod, which
        // answered. Gateway -> scapy: VXLAN with the frontend's identity in ESP, which scapy opens.
        var replies = output.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.True(replies.Count >= count, context);
        foreach (var r in replies)
        {
            Assert.False(r.TryGetProperty("error", out _), context);
            Assert.Equal(3, r.GetProperty("spi").GetInt32());
            Assert.Equal(cluster.A.TunnelAddress, r.GetProperty("outer_src").GetString());
            Assert.Equal(frontendId, r.GetProperty("vni").GetUInt32());
            Assert.Equal(frontend.Ip, r.GetProperty("src").GetString());
            Assert.Equal(backend.Ip, r.GetProperty("dst").GetString());
            Assert.Equal(0, r.GetProperty("icmp_type").GetInt32()); // echo reply
            Assert.StartsWith("ipsec-interop-", r.GetProperty("payload").GetString());
        }
        string metrics = DemoCluster.Metrics(cluster.A);
        Assert.Matches($"gateway_ipsec_packets_total{{direction=\"rx\",interface=\"{cluster.A.Interface}\"}} [3-9]", metrics);
        Assert.Matches($"gateway_ipsec_keys{{interface=\"{cluster.A.Interface}\"}} 1", metrics);
        Assert.Matches($"gateway_ipsec_errors_total{{interface=\"{cluster.A.Interface}\",type=\"auth_failure\"}} 0", metrics);

        // tshark decrypts the recorded underlay with both directions' SAs and finds VXLAN and the VNIs.
        var gatewayNode = IpAddress.Parse(cluster.A.Underlay);
        var scapyNode = IpAddress.Parse(cluster.B.Underlay);
        string espSa = Path.Combine(cluster.Directory, "esp_sa");
        DemoCluster.WriteSecret(espSa, WiresharkEspSa.File([
            new EspSaKeys(gatewayNode, scapyNode, 3, IpsecKeyDerivation.Derive(globalKey, gatewayNode, scapyNode, gatewayBoot, ScapyBootId), 128),
            new EspSaKeys(scapyNode, gatewayNode, 3, IpsecKeyDerivation.Derive(globalKey, scapyNode, gatewayNode, ScapyBootId, gatewayBoot), 128),
        ]));
        if (File.Exists(Tshark))
        {
            var (code, fields, err) = RunTshark(pcap, espSa, cluster.Directory);
            Assert.True(code == 0, err);
            var vnis = fields.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).Where(f => f.Length == 2 && f[1].Length > 0).ToList();
            Assert.Contains(vnis, f => f[0] == cluster.A.Underlay && f[1] == frontendId.ToString());
            Assert.Contains(vnis, f => f[0] == cluster.B.Underlay && f[1] == backendId.ToString());
        }

        // The capture of IPsec mode audits ENCRYPTED: no plaintext cluster traffic on the underlay.
        var (auditCode, audit, _) = CliHarness.Run("audit", pcap);
        Assert.True(auditCode == 0, audit);
        Assert.Contains("ENCRYPTED", audit);
        Assert.Contains("IPsec ESP", audit);
    }

    /// <summary>tshark over <paramref name="pcap"/> with the SAs of <paramref name="espSaFile"/>: one line per
    /// packet of ip.src and vxlan.vni (empty when the packet is not VXLAN or not decrypted), only the
    /// packets matching <paramref name="displayFilter"/> when given.</summary>
    internal static (int Code, string Out, string Err) RunTshark(string pcap, string espSaFile, string directory, string? displayFilter = null)
    {
        string home = Path.Combine(directory, "ws");
        Directory.CreateDirectory(Path.Combine(home, "wireshark"));
        File.Copy(espSaFile, Path.Combine(home, "wireshark", "esp_sa"), overwrite: true);
        var psi = new ProcessStartInfo("/bin/sh", ["-c",
            $"XDG_CONFIG_HOME='{home}' HOME='{home}' exec {Tshark} -r '{pcap}' -o esp.enable_encryption_decode:TRUE -d udp.port==8472,vxlan -T fields -E occurrence=f -e ip.src -e vxlan.vni" + (displayFilter is null ? "" : $" -Y '{displayFilter}'")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
