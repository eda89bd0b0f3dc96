using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Gateway.Node.Metrics;

/// <summary>
/// The <see cref="System.Diagnostics.Metrics"/> meters of one node: one <see cref="Meter"/> per
/// area, named <c>Gateway.&lt;Area&gt;</c> (<see cref="NodeArea"/>, <see cref="PolicyArea"/>, ...), all
/// with this object as their <see cref="Meter.Scope"/> so that an exporter (or <see cref="Read"/>)
/// can tell one node's instruments from another's in the same process. A host picks its own
/// exporter (OpenTelemetry, prometheus-net, <c>dotnet-counters</c>); the daemon serves them
/// through the Prometheus endpoint on Kestrel in Gateway.Hosting (<c>Gateway.Hosting.PrometheusEndpoint</c>).
/// </summary>
/// <remarks>
/// Every instrument is observable: it reads counters the data path already keeps, when a listener
/// collects. The data path never calls <c>Add</c> with tags, so it stays free of allocations.
/// Names follow Prometheus as documented (docs/metrics.md): counters end in <c>_total</c>, gauges
/// do not, and no unit is given (an exporter would append it to the name). Every series carries the
/// node's <c>interface</c> label; <see cref="Sample{T}"/> adds it. Exporters print labels sorted by name.
/// </remarks>
public sealed class GatewayMeters : IDisposable
{
    /// <summary>Prefix of every meter name; an exporter subscribes to <c>Gateway.*</c>.</summary>
    public const string MeterPrefix = "Gateway.";

    /// <summary>Peers, handshakes, drops and forwards of the WireGuard interface and its devices.</summary>
    public const string NodeArea = "Node";
    /// <summary>The overlay: policy verdicts, conntrack, flow events, overlay drops and forwards.</summary>
    public const string PolicyArea = "Policy";
    /// <summary>Cluster mode: the etcd kvstore and the nodes learnt from it.</summary>
    public const string ClusterArea = "Cluster";

    private readonly Func<string> _interfaceName;
    private readonly Dictionary<string, Meter> _meters = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <param name="interfaceName">The value of the <c>interface</c> label (read at each collection:
    /// the kernel may name the device only when it is created).</param>
    public GatewayMeters(Func<string> interfaceName)
    {
        ArgumentNullException.ThrowIfNull(interfaceName);
        _interfaceName = interfaceName;
    }

    /// <summary>The interface name every series is labelled with.</summary>
    public string InterfaceName => _interfaceName();

    /// <summary>Names of the meters created so far (for <c>dotnet-counters --counters</c>).</summary>
    public IReadOnlyList<string> MeterNames
    {
        get
        {
            lock (_meters)
            {
                return _meters.Values.Select(m => m.Name).ToArray();
            }
        }
    }

    /// <summary>The meter <c>Gateway.&lt;area&gt;</c> of this node, created on first use.</summary>
    public Meter Meter(string area)
    {
        ArgumentException.ThrowIfNullOrEmpty(area);
        lock (_meters)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_meters.TryGetValue(area, out var meter))
            {
                meter = new Meter(new MeterOptions(MeterPrefix + area) { Scope = this });
                _meters.Add(area, meter);
            }
            return meter;
        }
    }

    /// <summary>
    /// Adds a counter: a value that only grows (packets, bytes, events). <paramref name="name"/>
    /// must end in <c>_total</c>; <paramref name="observe"/> runs on the collecting thread and
    /// returns one <see cref="Sample{T}"/> per label set.
    /// </summary>
    public ObservableCounter<long> Counter(string area, string name, string description, Func<IEnumerable<Measurement<long>>> observe)
    {
        CheckName(name, counter: true);
        ArgumentNullException.ThrowIfNull(observe);
        return Meter(area).CreateObservableCounter(name, observe, unit: null, description);
    }

    /// <summary>
    /// Adds a gauge: a value that goes up and down (entries in use, 1/0 states, seconds since).
    /// <paramref name="name"/> must not end in <c>_total</c>.
    /// </summary>
    public ObservableGauge<double> Gauge(string area, string name, string description, Func<IEnumerable<Measurement<double>>> observe)
    {
        CheckName(name, counter: false);
        ArgumentNullException.ThrowIfNull(observe);
        return Meter(area).CreateObservableGauge(name, observe, unit: null, description);
    }

    /// <summary>One series of an instrument: the node's <c>interface</c> label, then <paramref name="labels"/>.</summary>
    public Measurement<T> Sample<T>(T value, params ReadOnlySpan<(string Name, string Value)> labels) where T : struct
    {
        var tags = new KeyValuePair<string, object?>[labels.Length + 1];
        tags[0] = new("interface", _interfaceName());
        for (int i = 0; i < labels.Length; i++)
        {
            tags[i + 1] = new(labels[i].Name, labels[i].Value);
        }
        return new Measurement<T>(value, tags);
    }

    private static void CheckName(string name, bool counter)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!name.StartsWith("gateway_", StringComparison.Ordinal) || name.Any(c => c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '_')))
        {
            throw new ArgumentException($"metric name '{name}' must start with gateway_ and use only a-z, 0-9 and _", nameof(name));
        }
        if (name.EndsWith("_total", StringComparison.Ordinal) != counter)
        {
            throw new ArgumentException(counter
                ? $"counter '{name}' must end in _total (an exporter would otherwise append it)"
                : $"gauge '{name}' must not end in _total (that suffix means a counter)", nameof(name));
        }
    }

    /// <summary>Collects every instrument of this node once, without any exporter.</summary>
    public IReadOnlyList<MetricReading> Read()
    {
        var readings = new List<MetricReading>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, this))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => readings.Add(new MetricReading(instrument.Name, Labels(tags), value)));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => readings.Add(new MetricReading(instrument.Name, Labels(tags), value)));
        listener.Start();
        listener.RecordObservableInstruments();
        return readings;
    }

    private static (string Name, string Value)[] Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var labels = new (string, string)[tags.Length];
        for (int i = 0; i < tags.Length; i++)
        {
            labels[i] = (tags[i].Key, Convert.ToString(tags[i].Value, CultureInfo.InvariantCulture) ?? "");
        }
        // In the exporter's order (by name), so a line here reads the same as in a scrape.
        Array.Sort(labels, (x, y) => string.CompareOrdinal(x.Item1, y.Item1));
        return labels;
    }

    /// <summary>
    /// The readings as lines <c>name{label="value",...} value</c> (labels sorted by name, as the
    /// Prometheus endpoint prints them): the series the endpoint serves, for logs and tests.
    /// </summary>
    public string ReadAsText()
    {
        var text = new StringBuilder();
        foreach (var reading in Read())
        {
            text.Append(reading).Append('\n');
        }
        return text.ToString();
    }

    public void Dispose()
    {
        lock (_meters)
        {
            _disposed = true;
            foreach (var meter in _meters.Values)
            {
                meter.Dispose();
            }
            _meters.Clear();
        }
    }
}

/// <summary>One series of one instrument at one collection.</summary>
public readonly record struct MetricReading(string Name, IReadOnlyList<(string Name, string Value)> Labels, double Value)
{
    /// <summary>The value of label <paramref name="name"/>, or null.</summary>
    public string? Label(string name)
    {
        foreach (var (n, v) in Labels)
        {
            if (n == name)
            {
                return v;
            }
        }
        return null;
    }

    public override string ToString()
    {
        var text = new StringBuilder(Name);
        if (Labels.Count > 0)
        {
            text.Append('{');
            for (int i = 0; i < Labels.Count; i++)
            {
                text.Append(i > 0 ? "," : "").Append(Labels[i].Name).Append("=\"")
                    .Append(Labels[i].Value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal))
                    .Append('"');
            }
            text.Append('}');
        }
        return text.Append(' ').Append(Value.ToString("R", CultureInfo.InvariantCulture)).ToString();
    }
}
