using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Gateway.Cluster;

namespace Gateway.Cli.Commands;

/// <summary>
/// `gateway cluster status`: what the cluster's etcd holds: nodes (lease left, key fingerprint,
/// address, pod CIDRs), identities, endpoints and policies. Unreachable etcd: one line, exit 1;
/// bad options: one line, exit 2.
/// </summary>
internal static class ClusterCommand
{
    public static Command Create()
    {
        var cluster = new Command("cluster", "Inspect the cluster store (etcd).");
        cluster.Subcommands.Add(CreateStatus());
        return cluster;
    }

    private static Command CreateStatus()
    {
        var kv = new KvStoreCliOptions();
        var jsonOpt = new Option<bool>("--json") { Description = "Print the status as JSON." };
        var cmd = new Command("status", "Nodes (lease left, key fingerprint, address, pod CIDRs), identities, endpoints and policies in etcd.") { jsonOpt };
        kv.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            return kv.Run(parse, async (client, ct) =>
            {
                var snap = client.Current;
                var leases = await client.GetNodeLeasesAsync(ct);
                var refs = await client.GetIdentityReferencesAsync(ct);
                var nodes = snap.Nodes.Values.OrderBy(n => n.Name, StringComparer.Ordinal).Select(n =>
                {
                    var left = leases.GetValueOrDefault(n.Name);
                    return new NodeStatus(n, left, Fingerprint(n.WireGuardPublicKey));
                }).ToList();
                if (parse.GetValue(jsonOpt))
                {
                    output.WriteLine(ToJson(client, snap, nodes, refs));
                    return 0;
                }
                output.WriteLine($"Cluster {client.Options.ClusterName} at {client.Options.EndpointText} (revision {snap.Revision})");
                output.WriteLine($"Nodes: {nodes.Count}");
                if (nodes.Count > 0)
                {
                    var rows = new List<string[]> { new[] { "NAME", "STATE", "LEASE", "KEY", "ADDRESS", "TUNNEL", "POD CIDRS" } };
                    rows.AddRange(nodes.Select(s => new[]
                    {
                        s.Node.Name, s.State, s.LeaseText, s.Fingerprint, $"{Endpoint(s.Node.Address, s.Node.Port)}", s.Node.TunnelAddress,
                        s.Node.PodCidrs.Count == 0 ? "-" : string.Join(',', s.Node.PodCidrs),
                    }));
                    WriteTable(output, rows);
                }
                output.WriteLine($"Identities: {snap.Identities.Count}");
                foreach (var (id, labels) in snap.Identities.OrderBy(p => p.Key))
                {
                    output.WriteLine($"  {id,-8} {labels} ({refs.GetValueOrDefault(labels)} node(s))");
                }
                output.WriteLine($"Endpoints: {snap.IpCache.Count}");
                output.WriteLine($"Policies: {snap.Policies.Count}");
                foreach (var name in snap.Policies.Keys.Order(StringComparer.Ordinal))
                {
                    output.WriteLine($"  {name}");
                }
                return 0;
            });
        });
        return cmd;
    }

    private sealed record NodeStatus(NodeRecord Node, TimeSpan? LeaseLeft, string Fingerprint)
    {
        public string State => LeaseLeft is null ? "static" : LeaseLeft > TimeSpan.Zero ? "up" : "expiring";
        public string LeaseText => LeaseLeft is { } l ? $"{(long)l.TotalSeconds}s" : "-";
    }

    private static string Endpoint(string address, int port) => address.Contains(':') ? $"[{address}]:{port}" : $"{address}:{port}";

    /// <summary>First 16 hex digits of SHA-256 over the 32 key bytes: short, and not the key itself.</summary>
    internal static string Fingerprint(string base64Key)
    {
        Span<byte> key = stackalloc byte[32];
        Span<byte> hash = stackalloc byte[32];
        if (!Convert.TryFromBase64String(base64Key, key, out int n) || n != 32)
        {
            return "invalid";
        }
        SHA256.HashData(key, hash);
        return Convert.ToHexStringLower(hash[..8]);
    }

    private static void WriteTable(TextWriter output, List<string[]> rows)
    {
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var r in rows)
        {
            output.WriteLine("  " + string.Join("  ", r.Select((cell, c) => c == r.Length - 1 ? cell : cell.PadRight(widths[c]))));
        }
    }

    private static string ToJson(ClusterClient client, ClusterSnapshot snap, List<NodeStatus> nodes, IReadOnlyDictionary<string, int> refs)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("cluster", client.Options.ClusterName);
            w.WriteString("kvstore", client.Options.EndpointText);
            w.WriteNumber("revision", snap.Revision);
            w.WriteStartArray("nodes");
            foreach (var s in nodes)
            {
                w.WriteStartObject();
                w.WriteString("name", s.Node.Name);
                w.WriteString("state", s.State);
                if (s.LeaseLeft is { } left)
                {
                    w.WriteNumber("leaseSecondsLeft", (long)left.TotalSeconds);
                }
                else
                {
                    w.WriteNull("leaseSecondsLeft");
                }
                w.WriteString("publicKey", s.Node.WireGuardPublicKey);
                w.WriteString("keyFingerprint", s.Fingerprint);
                w.WriteString("address", s.Node.Address);
                w.WriteNumber("port", s.Node.Port);
                w.WriteString("tunnelAddress", s.Node.TunnelAddress);
                w.WriteStartArray("podCidrs");
                foreach (var c in s.Node.PodCidrs)
                {
                    w.WriteStringValue(c);
                }
                w.WriteEndArray();
                w.WriteString("bootId", s.Node.BootId);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("identities");
            w.WriteNumber("count", snap.Identities.Count);
            w.WriteStartArray("items");
            foreach (var (id, labels) in snap.Identities.OrderBy(p => p.Key))
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("labels", labels);
                w.WriteNumber("references", refs.GetValueOrDefault(labels));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject("endpoints");
            w.WriteNumber("count", snap.IpCache.Count);
            w.WriteEndObject();
            w.WriteStartObject("policies");
            w.WriteNumber("count", snap.Policies.Count);
            w.WriteStartArray("names");
            foreach (var name in snap.Policies.Keys.Order(StringComparer.Ordinal))
            {
                w.WriteStringValue(name);
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}

/// <summary>
/// The --kvstore, --kvstore-ca, --kvstore-cert, --kvstore-key and --cluster options shared by the
/// commands that talk to etcd, and the one way they connect: a 3 s deadline per request, bad
/// options exit 2, an unreachable etcd exits 1, each with one line.
/// </summary>
internal sealed class KvStoreCliOptions
{
    /// <summary>Per-request deadline for the CLI: "unreachable" within a few seconds.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(3);

    /// <param name="required">False for a command that also works without etcd (then --kvstore is optional).</param>
    public KvStoreCliOptions(bool required = true) => KvStore.Required = required;

    public Option<string> KvStore { get; } = new("--kvstore") { Description = "etcd endpoints, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379.", Required = true };

    /// <summary>True when --kvstore was given.</summary>
    public bool IsGiven(ParseResult parse) => parse.GetValue(KvStore) is not null;
    public Option<string> Ca { get; } = new("--kvstore-ca") { Description = "PEM CA file that signed etcd's certificate (https endpoints)." };
    public Option<string> Cert { get; } = new("--kvstore-cert") { Description = "PEM client certificate for etcd (needs --kvstore-key)." };
    public Option<string> Key { get; } = new("--kvstore-key") { Description = "PEM private key of --kvstore-cert." };
    public Option<string> Cluster { get; } = new("--cluster") { Description = "Cluster name in the etcd keys (default: default)." };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(KvStore);
        cmd.Options.Add(Ca);
        cmd.Options.Add(Cert);
        cmd.Options.Add(Key);
        cmd.Options.Add(Cluster);
    }

    public KvStoreOptions Parse(ParseResult parse)
    {
        try
        {
            var o = KvStoreOptions.Parse(parse.GetValue(KvStore)!, parse.GetValue(Ca), parse.GetValue(Cert), parse.GetValue(Key), cluster: parse.GetValue(Cluster));
            return new KvStoreOptions
            {
                Endpoints = o.Endpoints, CaFile = o.CaFile, CertFile = o.CertFile, KeyFile = o.KeyFile,
                ClusterName = o.ClusterName, LeaseTtl = o.LeaseTtl, RequestTimeout = RequestTimeout,
            };
        }
        catch (ClusterConfigException e)
        {
            throw new CliException(e.Message.Replace("KVStoreCA", "--kvstore-ca", StringComparison.Ordinal)
                .Replace("KVStoreCert", "--kvstore-cert", StringComparison.Ordinal).Replace("KVStoreKey", "--kvstore-key", StringComparison.Ordinal)
                .Replace("KVStore:", "--kvstore:", StringComparison.Ordinal));
        }
    }

    /// <summary>Connects, runs <paramref name="action"/>, disconnects (without deregistering anything).</summary>
    public int Run(ParseResult parse, Func<ClusterClient, CancellationToken, Task<int>> action, KvStoreOptions? options = null)
    {
        options ??= Parse(parse);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            return RunAsync(options, action, cts.Token).GetAwaiter().GetResult();
        }
        catch (ClusterConfigException e)
        {
            throw new CliException(e.Message);
        }
        catch (KvStoreUnavailableException e)
        {
            throw new CliException(e.Message, exitCode: 1);
        }
    }

    private static async Task<int> RunAsync(KvStoreOptions options, Func<ClusterClient, CancellationToken, Task<int>> action, CancellationToken ct)
    {
        await using var client = await ClusterClient.ConnectAsync(options, _ => { }, ct: ct);
        return await action(client, ct);
    }

    /// <summary>Opens a store of cluster-wide objects (<see cref="ServiceStore"/>, <see cref="BandwidthStore"/>),
    /// runs <paramref name="action"/> with a 60 s limit, closes it: bad options or arguments exit 2,
    /// an unreachable etcd exits 1, each with one line.</summary>
    public static int RunStore<TStore>(KvStoreOptions options, Func<KvStoreOptions, TStore> open, Func<TStore, CancellationToken, Task<int>> action)
        where TStore : IAsyncDisposable
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            return RunStoreAsync(options, open, action, cts.Token).GetAwaiter().GetResult();
        }
        catch (ClusterConfigException e)
        {
            throw new CliException(e.Message);
        }
        catch (KvStoreUnavailableException e)
        {
            throw new CliException(e.Message, exitCode: 1);
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
    }

    private static async Task<int> RunStoreAsync<TStore>(KvStoreOptions options, Func<KvStoreOptions, TStore> open, Func<TStore, CancellationToken, Task<int>> action, CancellationToken ct)
        where TStore : IAsyncDisposable
    {
        await using var store = open(options);
        return await action(store, ct);
    }

    internal static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);
}
