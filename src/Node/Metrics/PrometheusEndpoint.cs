using System.Net;
using System.Net.Sockets;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Gateway.Node.Metrics;

/// <summary>
/// Serves one node's <see cref="GatewayMeters"/> at <c>http://ADDRESS:PORT/metrics</c> in the
/// Prometheus text format (OpenMetrics when the scraper asks for it), through OpenTelemetry's
/// Prometheus exporter on an <see cref="HttpListener"/>. The daemon binds it to loopback by
/// default (127.0.0.1:9962, Cilium's agent metrics port). Names pass through unchanged: the
/// instruments carry no unit and counters already end in <c>_total</c>, so the exporter appends
/// nothing; scope and target info series are off, so a scrape holds the documented series only.
/// </summary>
public sealed class PrometheusEndpoint : IDisposable
{
    public const int DefaultPort = 9962;

    private readonly MeterProvider _provider;

    private PrometheusEndpoint(MeterProvider provider, IPEndPoint endpoint)
    {
        _provider = provider;
        Endpoint = endpoint;
    }

    /// <summary>The address and port the endpoint listens on.</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>The scrape URL.</summary>
    public Uri Url => new($"http://{new IPEndPoint(Endpoint.Address, Endpoint.Port)}/metrics");

    /// <summary>Starts serving <paramref name="meters"/> (and no other node's instruments in the process).</summary>
    /// <exception cref="IOException">The address cannot be listened on (in use, not local).</exception>
    public static PrometheusEndpoint Start(IPEndPoint endpoint, GatewayMeters meters)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(meters);
        if (endpoint.Port == 0)
        {
            throw new ArgumentException("the metrics port must not be 0", nameof(endpoint));
        }
        try
        {
            var provider = Sdk.CreateMeterProviderBuilder()
                .AddMeter(GatewayMeters.MeterPrefix + "*")
                // Two nodes in one process (tests, samples) each serve their own series.
                .AddView(instrument => ReferenceEquals(instrument.Meter.Scope, meters) ? null : MetricStreamConfiguration.Drop)
                .AddPrometheusHttpListener(options =>
                {
                    options.Host = Host(endpoint.Address);
                    options.Port = endpoint.Port;
                    options.ScrapeEndpointPath = "/metrics";
                    // Every scrape reads the counters now (the default caches answers for 300 ms).
                    options.ScrapeResponseCacheDurationMilliseconds = 0;
                    options.ScopeInfoEnabled = false;
                    options.TargetInfoEnabled = false;
                })
                .Build();
            return new PrometheusEndpoint(provider, endpoint);
        }
        catch (Exception e) when (e is InvalidOperationException or HttpListenerException or SocketException)
        {
            throw new IOException($"cannot listen for metrics on {endpoint}: {Innermost(e).Message}", e);
        }
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner)
        {
            e = inner;
        }
        return e;
    }

    /// <summary>The host part of the listener prefix: "*" for any address, brackets around IPv6.</summary>
    private static string Host(IPAddress address) =>
        address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) ? "*" :
        address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" :
        address.ToString();

    public void Dispose() => _provider.Dispose();
}
