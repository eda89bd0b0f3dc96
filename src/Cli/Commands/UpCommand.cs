using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices;
using Gateway.Cluster;
using Gateway.Node.Cluster;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Link;
using Gateway.Hosting;
using Gateway.Node.Uapi;
using Gateway.Node.Hosting;
using Gateway.Tunnel.Uapi;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;

namespace Gateway.Cli.Commands;

/// <summary>`gateway up CONFIG`: run a WireGuard interface in the foreground from a wg-quick file, as a
/// Microsoft.Extensions.Hosting generic host with systemd integration.</summary>
internal static class UpCommand
{
    public static Command Create()
    {
        var config = new Argument<string>("config")
        {
            Description = "wg-quick configuration file (e.g. /etc/wireguard/wg0.conf). The interface is named after it unless --interface is given.",
        };
        var iface = new Option<string?>("--interface", "-i")
        {
            Description = "Interface name (default: the config file name without .conf).",
        };
        var metrics = new Option<string>("--metrics")
        {
            Description = "Prometheus metrics address ADDRESS:PORT, or 'off'.",
            DefaultValueFactory = _ => $"127.0.0.1:{PrometheusEndpoint.DefaultPort}",
        };
        var uapiDir = new Option<string>("--uapi-dir")
        {
            Description = "Folder for the UAPI socket that `wg` and `gateway show` use.",
            DefaultValueFactory = _ => UapiSocketServer.DefaultDirectory,
        };
        var workers = new Option<int?>("--crypto-workers")
        {
            Description = "Threads that seal and open packets, with per-peer order kept (default: one per CPU; " +
                          "0: the TUN and UDP reader threads do it themselves).",
            CustomParser = result =>
            {
                if (result.Tokens.Count == 1 && int.TryParse(result.Tokens[0].Value, out int count) && count is >= 0 and <= 256)
                {
                    return count;
                }
                result.AddError("--crypto-workers must be a number from 0 to 256");
                return null;
            },
        };
        var offload = new Option<string>("--tun-offload")
        {
            Description = "TCP segmentation and checksum offload on the TUN device: the kernel hands over TCP " +
                          "super-packets of up to 64 KiB that gateway cuts into segments (on or off; default on).",
            HelpName = "on|off",
            DefaultValueFactory = _ => "on",
        };
        offload.Validators.Add(result =>
        {
            if (result.Tokens.Count == 1 && result.Tokens[0].Value is not ("on" or "off"))
            {
                result.AddError("--tun-offload must be on or off");
            }
        });
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Log more detail." };
        var command = new Command("up",
            "Run a userspace WireGuard interface in the foreground, configured by a wg-quick file; " +
            "manage it with `wg` or `gateway show`. SIGTERM/SIGINT stop it, SIGHUP reloads the file.")
        {
            config, iface, metrics, uapiDir, workers, offload, verbose,
        };
        command.SetAction(parse => Run(
            parse.GetValue(config)!, parse.GetValue(iface), parse.GetValue(metrics)!, parse.GetValue(uapiDir)!,
            parse.GetValue(workers), parse.GetValue(offload) == "on", parse.GetValue(verbose), parse.InvocationConfiguration.Error));
        return command;
    }

    internal static IPEndPoint? ParseMetrics(string text)
    {
        if (text.Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        if (!IPEndPoint.TryParse(text, out var endpoint) || endpoint.Port == 0)
        {
            throw new CliException($"--metrics '{text}' must be ADDRESS:PORT or off");
        }
        return endpoint;
    }

    private static int Run(string configPath, string? interfaceName, string metricsText, string uapiDir, int? cryptoWorkers, bool tunOffloads, bool verbose, TextWriter stderr)
    {
        var metricsEndpoint = ParseMetrics(metricsText);
        string name = interfaceName ?? Path.GetFileNameWithoutExtension(configPath);
        if (name.Length is 0 or > 15 || name.AsSpan().IndexOfAny(" /\t") >= 0)
        {
            throw new CliException($"interface name '{name}' is not valid (1-15 characters, no spaces or '/'); use --interface");
        }
        WgQuickConfig config;
        try
        {
            config = WgQuickConfig.Load(configPath);
        }
        catch (ConfigException e)
        {
            throw new CliException(e.Message, 1);
        }
        // Under systemd with the journal on stderr, lines carry syslog priorities (<6> info, <4> warn, ...).
        var log = new NodeLog(stderr, verbose) { SyslogPrefixes = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("JOURNAL_STREAM")) };
        foreach (var warning in config.Warnings)
        {
            log.Warn(warning);
        }
        if (Environment.UserName != "root")
        {
            config.Dispose();
            throw new CliException("gateway up needs root (or CAP_NET_ADMIN) to create the TUN interface", 1);
        }

        // Signals are taken over before anything starts (the host's own lifetime registers its
        // handlers only when it starts). A SIGTERM during start-up stops the node as soon as it is
        // up (cleanly, strict routes kept); a SIGHUP that arrives while the node comes up (an
        // operator or a test may send it the moment "up: listening" is logged) is remembered and
        // served once the node and the cluster agent run.
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        var signalGate = new object();
        Action? reload = null;
        bool reloadPending = false;
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            Action? now;
            lock (signalGate)
            {
                now = reload;
                reloadPending |= now is null;
            }
            if (now is not null)
            {
                ThreadPool.QueueUserWorkItem(_ => now());
            }
        });

        // Cluster mode: connect to etcd first; the node starts with the file's peers plus every
        // node already registered.
        ClusterAgent? agent = config.Overlay?.KvStore is null ? null : ConnectCluster(ref config, log);
        using var host = BuildHost(new WireGuardNodeOptions
        {
            InterfaceName = name,
            Config = config,
            UapiDirectory = uapiDir,
            MetricsExporter = metricsEndpoint is null ? null : meters => PrometheusEndpoint.Start(metricsEndpoint, meters),
            CryptoWorkers = cryptoWorkers,
            TunOffloads = tunOffloads,
            Log = log,
            // The socket hands over the request without its terminating empty line.
            UapiHandler = static (engine, request) => UapiProtocol.Handle(engine, request + "\n") ?? "errno=-22\n\n",
            OverlaySource = agent?.Source,
            // Cluster mode in IPsec mode: the keys are derived from the address and boot id
            // this node publishes in its record (no [Peer] to find the address from).
            IpsecNodeAddress = agent?.NodeAddress,
            IpsecBootId = agent?.BootId,
        }, agent);
        var service = host.Services.GetRequiredService<WireGuardNodeService>();
        try
        {
            host.StartAsync().GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OperationCanceledException && stop.IsCancellationRequested)
        {
            StopHost(host, log); // SIGTERM before the node started: nothing to run
            config.Dispose();
            return 0;
        }
        catch (Exception e) when (e is DeviceException or LinkException or IOException or ConfigException)
        {
            StopHost(host, log); // deregisters the cluster agent; the node undid its own start
            config.Dispose();
            throw new CliException(e.Message, 1);
        }
        catch (Exception e) when (agent is not null && e is KvStoreUnavailableException or InvalidDataException or OperationCanceledException)
        {
            StopHost(host, log);
            config.Dispose();
            throw new CliException($"cluster: registering this node failed: {e.Message}", 1);
        }
        var node = service.Node!;
        lock (signalGate)
        {
            reload = () => Reload(node, agent, configPath, log);
            if (reloadPending)
            {
                var first = reload;
                ThreadPool.QueueUserWorkItem(_ => first());
            }
        }
        // SIGTERM/SIGINT (also one that came during start-up) stop the host; so does the node failing
        // (WireGuardNodeService), and under systemd the host's own SIGTERM handling. The host then stops
        // its services in reverse order: the cluster agent deregisters first (the other nodes drop this
        // one at once instead of at lease end), then the node goes down.
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        using (stop.Token.Register(lifetime.StopApplication))
        {
            host.WaitForShutdown();
        }
        config.Dispose();
        return service.NodeFailed ? 1 : 0;
    }

    /// <summary>
    /// The generic host <c>gateway up</c> runs in: the node as a <see cref="WireGuardNodeService"/>, then
    /// the cluster agent (cluster mode). No configuration sources, no logging providers (the node logs
    /// its own lines to stderr). Under systemd the host is a Type=notify service (Microsoft.Extensions.
    /// Hosting.Systemd): READY=1 once every service started, so after the node's "up" line and the
    /// cluster registration, STOPPING=1 when it stops. READY=1 also reaches a manager that is not the
    /// parent process but set NOTIFY_SOCKET (a wrapper, systemd-run, a container's notify proxy).
    /// </summary>
    private static IHost BuildHost(WireGuardNodeOptions options, ClusterAgent? agent)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ContentRootPath = "/" });
        builder.Services.AddSystemd();
        if (!SystemdHelpers.IsSystemdService() && new SystemdNotifier().IsEnabled)
        {
            builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
            builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
        }
        // Stopping waits for the node however long its PreDown/PostDown hooks take.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = Timeout.InfiniteTimeSpan);
        builder.Services.AddSingleton(services => new WireGuardNodeService(() => options, services.GetRequiredService<IHostApplicationLifetime>()));
        builder.Services.AddHostedService(services => services.GetRequiredService<WireGuardNodeService>());
        if (agent is not null)
        {
            builder.Services.AddHostedService(services => new ClusterAgentService(agent, services.GetRequiredService<WireGuardNodeService>()));
        }
        return builder.Build();
    }

    private static void StopHost(IHost host, NodeLog log)
    {
        try
        {
            host.StopAsync().GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            log.Warn($"stopping after a failed start: {WireGuardNode.DescribeFailure(e)}");
        }
    }

    /// <summary>The cluster agent as a hosted service after the node: registers the running node's
    /// state on start, deregisters (and closes the etcd connection) on stop.</summary>
    private sealed class ClusterAgentService(ClusterAgent agent, WireGuardNodeService node) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            agent.StartAsync(node.Node ?? throw new InvalidOperationException("the node did not start"));

        public async Task StopAsync(CancellationToken cancellationToken) => await agent.DisposeAsync().ConfigureAwait(false);
    }

    private static ClusterAgent ConnectCluster(ref WgQuickConfig config, NodeLog log)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var agent = ClusterAgent.ConnectAsync(config, log, timeout.Token).GetAwaiter().GetResult();
            try
            {
                var merged = agent.BuildInitialConfig();
                config.Dispose();
                config = merged;
                agent.RegisterAsync(merged.Interface.ListenPort!.Value, timeout.Token).GetAwaiter().GetResult();
                return agent;
            }
            catch
            {
                agent.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw;
            }
        }
        catch (Exception e) when (e is ConfigException or KvStoreUnavailableException or OperationCanceledException or ArgumentException or InvalidOperationException)
        {
            config.Dispose();
            var kv = config.Overlay?.KvStore;
            string hint = e is KvStoreUnavailableException && kv is { CertPath: null } && kv.Endpoints.Contains("https://", StringComparison.OrdinalIgnoreCase) &&
                          !e.Message.Contains("KVStoreCert", StringComparison.Ordinal)
                ? " (no client certificate was offered: if etcd runs with --client-cert-auth, set KVStoreCert and KVStoreKey)"
                : "";
            throw new CliException(e is ConfigException ? e.Message : $"cluster: cannot use the kvstore: {e.Message}{hint}", 1);
        }
    }

    private static void Reload(WireGuardNode node, ClusterAgent? agent, string configPath, NodeLog log)
    {
        if (agent is null)
        {
            node.ReloadFile(configPath); // logs its own failure; the previous configuration stays
            return;
        }
        try
        {
            agent.ReloadFile(); // re-merges the cluster's peers; republishes a new public key
        }
        catch (Exception e)
        {
            // Runs on a pool thread: nothing may escape, whatever failed.
            log.Error($"reload failed, previous configuration stays in force: {WireGuardNode.DescribeFailure(e)}");
        }
    }
}
