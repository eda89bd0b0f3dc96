using System.Net;
using System.Net.Sockets;
using Gateway.Node.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Gateway.Hosting;

/// <summary>
/// Serves one node's <see cref="GatewayMeters"/> at <c>http://ADDRESS:PORT/metrics</c> in the
/// Prometheus text format (OpenMetrics when the scraper asks for it) through OpenTelemetry's
/// ASP.NET Core exporter on a Kestrel server of its own. The daemon binds it to loopback by default
/// (127.0.0.1:9962, Cilium's agent metrics port). Kestrel rather than <c>HttpListener</c> because
/// Kestrel bounds what a client can make it hold (<see cref="PrometheusEndpointLimits"/>): request
/// line, headers, connections, time to send a request; HTTP/1.1 only, no request bodies.
/// Names pass through unchanged: the instruments carry no unit and counters already end in
/// <c>_total</c>, so the exporter appends nothing; scope and target info series are off, so a scrape
/// holds the documented series only. This type lives in Gateway.Hosting, not Gateway.Node, so that
/// a program embedding the datapath takes no ASP.NET Core dependency.
/// </summary>
public sealed class PrometheusEndpoint : IDisposable, IAsyncDisposable
{
    public const int DefaultPort = 9962;

    private readonly WebApplication _app;
    private readonly MeterProvider _provider;
    private int _disposed;

    private PrometheusEndpoint(WebApplication app, MeterProvider provider, IPEndPoint endpoint)
    {
        _app = app;
        _provider = provider;
        Endpoint = endpoint;
    }

    /// <summary>The address and port the endpoint listens on (the port the kernel chose when 0 was asked for).</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>The scrape URL.</summary>
    public Uri Url => new($"http://{Endpoint}/metrics");

    /// <summary>Starts serving <paramref name="meters"/> (and no other node's instruments in the process).</summary>
    /// <param name="limits">Bounds on requests and connections; null: <see cref="PrometheusEndpointLimits"/>'s defaults.</param>
    /// <exception cref="IOException">The address cannot be listened on (in use, not local).</exception>
    public static PrometheusEndpoint Start(IPEndPoint endpoint, GatewayMeters meters, PrometheusEndpointLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(meters);
        limits ??= new PrometheusEndpointLimits();
        var provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(GatewayMeters.MeterPrefix + "*")
            // Two nodes in one process (tests, samples) each serve their own series.
            .AddView(instrument => ReferenceEquals(instrument.Meter.Scope, meters) ? null : MetricStreamConfiguration.Drop)
            .AddPrometheusExporter(options =>
            {
                // Every scrape reads the counters now (the default caches answers for 300 ms).
                options.ScrapeResponseCacheDurationMilliseconds = 0;
                options.ScrapeResponseTimeoutMilliseconds = (int)limits.ScrapeTimeout.TotalMilliseconds;
                options.ScopeInfoEnabled = false;
                options.TargetInfoEnabled = false;
            })
            .Build();
        WebApplication? app = null;
        try
        {
            // The empty builder: no configuration files, environment variables, logging providers
            // or static files; only Kestrel and the one middleware below.
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
            builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
            {
                kestrel.AddServerHeader = false;
                var bounds = kestrel.Limits;
                bounds.MaxRequestLineSize = limits.MaxRequestLineBytes;
                bounds.MaxRequestHeadersTotalSize = limits.MaxRequestHeadersBytes;
                bounds.MaxRequestHeaderCount = limits.MaxRequestHeaderCount;
                // What Kestrel reads ahead of the parser: enough for a whole request line and headers.
                bounds.MaxRequestBufferSize = Math.Max(limits.MaxRequestLineBytes, limits.MaxRequestHeadersBytes) * 2L;
                bounds.MaxConcurrentConnections = limits.MaxConnections;
                bounds.MaxConcurrentUpgradedConnections = 0;
                bounds.RequestHeadersTimeout = limits.RequestHeadersTimeout;
                bounds.KeepAliveTimeout = limits.KeepAliveTimeout;
                bounds.MaxRequestBodySize = 0;
                kestrel.Listen(endpoint, listen => listen.Protocols = HttpProtocols.Http1);
            });
            app = builder.Build();
            // A scrape is a GET without a body; anything else is refused before the exporter sees it
            // (Kestrel's body limit of 0 closes the connection rather than read a body nobody asked for).
            app.Use((context, next) =>
            {
                var request = context.Request;
                if (!HttpMethods.IsGet(request.Method))
                {
                    context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
                    context.Response.Headers.Allow = "GET";
                    return Task.CompletedTask;
                }
                if (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0)
                {
                    context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
                    return Task.CompletedTask;
                }
                return next(context);
            });
            app.UseOpenTelemetryPrometheusScrapingEndpoint(meterProvider: provider, predicate: null, path: "/metrics",
                configureBranchedPipeline: null, optionsName: null);
            app.StartAsync().GetAwaiter().GetResult();
            var bound = BoundEndpoint(app, endpoint);
            return new PrometheusEndpoint(app, provider, bound);
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidOperationException)
        {
            (app as IDisposable)?.Dispose();
            provider.Dispose();
            throw new IOException($"cannot listen for metrics on {endpoint}: {Innermost(e).Message}", e);
        }
    }

    /// <summary>The address Kestrel bound (port 0 asks the kernel for a free one).</summary>
    private static IPEndPoint BoundEndpoint(WebApplication app, IPEndPoint asked)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        foreach (string address in addresses ?? [])
        {
            if (Uri.TryCreate(address, UriKind.Absolute, out var uri))
            {
                return new IPEndPoint(asked.Address, uri.Port);
            }
        }
        return asked;
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner)
        {
            e = inner;
        }
        return e;
    }

    /// <summary>The scrape URL (how the daemon's start-up line names the endpoint).</summary>
    public override string ToString() => Url.ToString();

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            await _app.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        await _app.DisposeAsync().ConfigureAwait(false);
        _provider.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
