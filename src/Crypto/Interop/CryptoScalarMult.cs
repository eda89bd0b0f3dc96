using System.Runtime.InteropServices;

namespace Gateway.Crypto.Interop;

internal static unsafe partial class Sodium
{
    /// <summary>q = X25519(n, p); returns -1 (and an all-zero q) for a small-order p.</summary>
    [LibraryImport(Library, EntryPoint = "crypto_scalarmult_curve25519")]
    public static partial int CryptoScalarMultCurve25519(byte* q, byte* n, byte* p);
}
