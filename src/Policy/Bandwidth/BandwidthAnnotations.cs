namespace Gateway.Policy;

/// <summary>
/// The pod annotations Kubernetes defines for traffic shaping, read as the kubelet's bandwidth
/// code reads them (pkg/util/bandwidth): a resource quantity in bits per second, at least 1k and
/// at most 1P. Cilium's bandwidth manager enforces the same two annotations.
/// </summary>
public static class BandwidthAnnotations
{
    public const string Egress = "kubernetes.io/egress-bandwidth";
    public const string Ingress = "kubernetes.io/ingress-bandwidth";

    /// <summary>The kubelet's bounds: 1k and 1P bits per second.</summary>
    public const long MinBitsPerSecond = 1_000;
    public const long MaxBitsPerSecond = 1_000_000_000_000_000;

    /// <summary>Reads one annotation value as bits per second; false with the reason otherwise.</summary>
    public static bool TryParseRate(string? text, out long bitsPerSecond, out string? problem)
    {
        if (!ResourceQuantity.TryParseValue(text, out bitsPerSecond, out problem))
        {
            return false;
        }
        if (bitsPerSecond < MinBitsPerSecond)
        {
            problem = $"'{text}' is unreasonably small (< 1kbit)";
            return false;
        }
        if (bitsPerSecond > MaxBitsPerSecond)
        {
            problem = $"'{text}' is unreasonably large (> 1Pbit)";
            return false;
        }
        return true;
    }

    /// <summary>A rate for people: 10M, 1.5G, 500k (bits per second, decimal SI).</summary>
    public static string Format(long bitsPerSecond)
    {
        string[] units = ["", "k", "M", "G", "T", "P"];
        double v = bitsPerSecond;
        int u = 0;
        while (v >= 1000 && u < units.Length - 1)
        {
            v /= 1000;
            u++;
        }
        return v.ToString(v == Math.Floor(v) ? "0" : "0.###", System.Globalization.CultureInfo.InvariantCulture) + units[u];
    }
}
