namespace Gateway.Node.Configuration;

/// <summary>How the overlay between nodes is encrypted ([Overlay] Encryption).</summary>
public enum OverlayEncryption
{
    /// <summary>WireGuard (the default): VXLAN inside WireGuard transport messages.</summary>
    WireGuard,
    /// <summary>IPsec ESP tunnel mode with rfc4106(gcm(aes)) and Cilium's keys file.</summary>
    Ipsec,
}

/// <summary>The [Overlay] keys of IPsec mode (issue 16), kept apart from the other overlay keys.</summary>
public sealed partial class OverlaySection
{
    /// <summary>[Overlay] Encryption = wireguard | ipsec.</summary>
    public OverlayEncryption Encryption { get; set; } = OverlayEncryption.WireGuard;

    /// <summary>[Overlay] IPsecKeyFile: Cilium's keys file ("[id][+] rfc4106(gcm(aes)) hex icv").</summary>
    public string? IpsecKeyFilePath { get; set; }

    /// <summary>[Overlay] IPsecKeyRotationDuration: how long a replaced key is still accepted
    /// (Cilium's --ipsec-key-rotation-duration, default 5 minutes).</summary>
    public TimeSpan IpsecKeyRotationDuration { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Line of IPsecKeyRotationDuration or IPsecKeyFile, for messages.</summary>
    internal int IpsecKeyLine { get; set; }
}
