using System.Text.Json;
using Gateway.Datapath;
using Gateway.Node.Link;

namespace Gateway.Node.Cluster;

/// <summary>
/// NodeAddress's default: the first address of the interface that holds the default route in
/// this network namespace (what other nodes reach this one by), read from iproute2's JSON output.
/// </summary>
public static class NodeAddressDiscovery
{
    /// <summary>The address, or null with <paramref name="why"/> when there is no default route
    /// or its interface has no address.</summary>
    public static IpAddress? Find(out string why)
    {
        foreach (string family in new[] { "-4", "-6" })
        {
            string? device = DefaultRouteDevice(family);
            if (device is null)
            {
                continue;
            }
            var address = FirstAddress(family, device);
            if (address is not null)
            {
                why = "";
                return address;
            }
        }
        why = "no default route with an addressed interface in this network namespace; set NodeAddress in [Overlay]";
        return null;
    }

    private static string? DefaultRouteDevice(string family)
    {
        try
        {
            using var doc = JsonDocument.Parse(IpCommand.Run($"-j {family} route show default"));
            foreach (var route in doc.RootElement.EnumerateArray())
            {
                if (route.TryGetProperty("dev", out var dev) && dev.GetString() is { Length: > 0 } name)
                {
                    return name;
                }
            }
        }
        catch (Exception e) when (e is LinkException or JsonException or InvalidOperationException)
        {
        }
        return null;
    }

    private static IpAddress? FirstAddress(string family, string device)
    {
        try
        {
            using var doc = JsonDocument.Parse(IpCommand.Run($"-j {family} addr show dev {device}"));
            foreach (var link in doc.RootElement.EnumerateArray())
            {
                if (!link.TryGetProperty("addr_info", out var infos))
                {
                    continue;
                }
                foreach (var info in infos.EnumerateArray())
                {
                    bool linkLocal = info.TryGetProperty("scope", out var scope) && scope.GetString() == "link";
                    if (!linkLocal && info.TryGetProperty("local", out var local) && IpAddress.TryParse(local.GetString(), out var address))
                    {
                        return address;
                    }
                }
            }
        }
        catch (Exception e) when (e is LinkException or JsonException or InvalidOperationException)
        {
        }
        return null;
    }
}
