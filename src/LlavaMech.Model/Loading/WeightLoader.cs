namespace LlavaMech.Model.Loading;

/// <summary>Fills a module's parameters from a checkpoint, one tensor at a time (peak memory: the model plus one tensor).</summary>
public static class WeightLoader
{
    /// <summary>Checks names and shapes against the checkpoint, then copies every parameter, converting dtype and device.</summary>
    /// <param name="skip">canonical names not read from the checkpoint (a tied lm_head).</param>
    public static void Load(nn.Module module, Checkpoint checkpoint, ModelKind kind, ISet<string>? skip = null)
    {
        var parameters = module.named_parameters().Where(p => skip is null || !skip.Contains(p.name)).ToList();
        var expected = parameters.ToDictionary(p => p.name, p => p.parameter.shape);
        var fileKeys = WeightNames.Bind(checkpoint, expected, kind);
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            using var scope = NewDisposeScope();
            var value = checkpoint.Read(fileKeys[name], parameter.dtype, parameter.device);
            parameter.copy_(value);
        }
    }
}
