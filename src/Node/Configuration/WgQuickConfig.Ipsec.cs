using System.Globalization;
using System.Text.RegularExpressions;

namespace Gateway.Node.Configuration;

/// <summary>Parsing of the IPsec [Overlay] keys: Encryption, IPsecKeyFile, IPsecKeyRotationDuration.</summary>
public sealed partial class WgQuickConfig
{
    private void ApplyIpsecKey(OverlaySection overlay, string name, string value, int line, string resolvedPath)
    {
        switch (name.ToLowerInvariant())
        {
            case "encryption":
                overlay.Encryption = value.ToLowerInvariant() switch
                {
                    "wireguard" => OverlayEncryption.WireGuard,
                    "ipsec" => OverlayEncryption.Ipsec,
                    _ => throw new ConfigException(Path, line, $"Encryption '{value}' is not 'wireguard' or 'ipsec'"),
                };
                break;
            case "ipseckeyfile":
                overlay.IpsecKeyFilePath = resolvedPath;
                overlay.IpsecKeyLine = line;
                break;
            case "ipseckeyrotationduration":
                if (!TryParseDuration(value, out TimeSpan duration))
                {
                    throw new ConfigException(Path, line, $"IPsecKeyRotationDuration '{value}' is not a duration like 5m, 90s, 1h30m or a number of seconds");
                }
                overlay.IpsecKeyRotationDuration = duration;
                overlay.IpsecKeyLine = line;
                break;
        }
    }

    private void ValidateIpsec(OverlaySection overlay)
    {
        if (overlay.Encryption == OverlayEncryption.Ipsec && overlay.IpsecKeyFilePath is null)
        {
            throw new ConfigException(Path, overlay.Line, "Encryption = ipsec needs IPsecKeyFile");
        }
        if (overlay.Encryption != OverlayEncryption.Ipsec && overlay.IpsecKeyLine > 0)
        {
            throw new ConfigException(Path, overlay.IpsecKeyLine, "IPsec keys need Encryption = ipsec");
        }
    }

    /// <summary>[Peer] IPsecBootId: the peer node's boot id as that node prints it at start
    /// (a UUID, 36 characters), one input of Cilium's per node-pair key derivation.</summary>
    private string ParseIpsecBootId(string value, int line)
    {
        if (!Guid.TryParseExact(value, "D", out _))
        {
            throw new ConfigException(Path, line, $"IPsecBootId '{value}' is not a UUID like 4f1e2d3c-0000-4000-8000-00000000abcd");
        }
        return value.ToLowerInvariant();
    }

    /// <summary>
    /// Go-style durations as Cilium's flag takes them ("5m", "90s", "1h30m", "5m0s", "1.5m"), or
    /// plain seconds. Zero is allowed (old keys removed at once); negative is not.
    /// </summary>
    internal static bool TryParseDuration(string text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        text = text.Trim();
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds))
        {
            if (seconds < 0 || double.IsNaN(seconds) || seconds > TimeSpan.MaxValue.TotalSeconds / 2) return false;
            duration = TimeSpan.FromSeconds(seconds);
            return true;
        }
        Match m = GoDuration().Match(text);
        if (!m.Success) return false;
        double total = 0;
        foreach (Capture c in m.Groups["part"].Captures)
        {
            Match part = GoDurationPart().Match(c.Value);
            double n = double.Parse(part.Groups[1].Value, CultureInfo.InvariantCulture);
            total += part.Groups[2].Value switch
            {
                "h" => n * 3600,
                "m" => n * 60,
                "s" => n,
                "ms" => n / 1000,
                _ => double.NaN,
            };
        }
        if (double.IsNaN(total) || total > TimeSpan.MaxValue.TotalSeconds / 2) return false;
        duration = TimeSpan.FromSeconds(total);
        return true;
    }

    [GeneratedRegex(@"^(?<part>[0-9]+(?:\.[0-9]+)?(?:h|ms|m|s))+$")]
    private static partial Regex GoDuration();

    [GeneratedRegex(@"^([0-9]+(?:\.[0-9]+)?)(h|ms|m|s)$")]
    private static partial Regex GoDurationPart();
}
