namespace Gateway.Hosting;

/// <summary>
/// Bounds on what a client of the metrics endpoint can make the process hold (issue 14, bounded
/// input): Kestrel enforces each one, so a long request line, a flood of headers, a crowd of
/// connections or a client that trickles its request costs a few kilobytes and a short while, never
/// the node. A scrape is one short GET with a handful of headers; the defaults leave it ample room.
/// </summary>
public sealed record PrometheusEndpointLimits
{
    /// <summary>Longest request line ("GET /metrics HTTP/1.1"), in bytes; longer ones get 414.</summary>
    public int MaxRequestLineBytes { get; init; } = 1024;

    /// <summary>Most bytes of request headers altogether; more get 431.</summary>
    public int MaxRequestHeadersBytes { get; init; } = 8 * 1024;

    /// <summary>Most request headers; more get 431.</summary>
    public int MaxRequestHeaderCount { get; init; } = 32;

    /// <summary>Most connections open at once; Kestrel closes any beyond it as soon as it accepts them.</summary>
    public long MaxConnections { get; init; } = 16;

    /// <summary>Time a client has to send its request line and headers (slowloris bound).</summary>
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Time an idle kept-alive connection stays open between scrapes.</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Time one scrape may wait for its answer.</summary>
    public TimeSpan ScrapeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
