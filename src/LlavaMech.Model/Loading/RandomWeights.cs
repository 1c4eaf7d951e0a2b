namespace LlavaMech.Model.Loading;

/// <summary>Random weights for benchmarks at real shapes without a checkpoint: N(0, std), norms 1, biases 0.</summary>
public static class RandomWeights
{
    public static void Fill(nn.Module module, long seed, double std = 0.02)
    {
        using var noGrad = no_grad();
        var gen = new Generator((ulong)seed, module.parameters().First().device);
        foreach (var (name, p) in module.named_parameters())
        {
            bool isNorm = name.Contains("norm") || name.Contains("layrnorm");
            if (isNorm && name.EndsWith(".weight", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else p.normal_(0, std, gen);
        }
    }
}
